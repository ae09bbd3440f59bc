"""The uvicorn server of the aggregator's API: mutual TLS by default, plain HTTP only when asked.

With TLS the server presents ``tls_cert_file``, accepts only clients whose certificate chains to
``tls_ca_file`` (refused in the handshake otherwise), and the app requires each signed post to come
from the member the client certificate is bound to (``ClientBinding``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import uvicorn

from aggregator.client_binding import ClientBinding
from aggregator.config import AggregatorConfig
from aggregator.http_api import SessionBoard, create_app
from fedledger.tls import TLSMaterialError
from fedledger.tls.contexts import server_options, without_tls_hint


def api_server(
    board: SessionBoard, config: AggregatorConfig, base: Path, password: str, chain_id: int, insecure_http: bool
) -> uvicorn.Server:
    """A server for the board's API on the config's host and port (TLS files relative to ``base``)."""
    if insecure_http:
        app, tls = create_app(board, limits=config.request_limits()), {}
    else:
        try:
            tls = server_options(config.tls_files(base), password)
        except TLSMaterialError as exc:
            raise without_tls_hint(exc) from None
        app = create_app(board, ClientBinding(chain_id), config.request_limits())
    return uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", **tls))


def serve_in_background(server: uvicorn.Server) -> threading.Thread:
    """Run ``server`` in a daemon thread; stop it with ``server.should_exit = True`` and a join."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    return thread
