"""The verified client certificate, handed to the ASGI app as the ASGI TLS extension.

uvicorn checks the client certificate during the handshake (``ssl_cert_reqs=CERT_REQUIRED``) but
does not pass it on to the app; the app needs it to bind a request to the member that made it.
``ClientCertProtocol`` is uvicorn's h11 protocol plus one step: once the handshake is done, every
request on the connection gets ``scope["extensions"]["tls"]["client_cert_chain"]`` (PEM), as the
ASGI TLS extension specifies.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import MutableMapping
from typing import Any

from cryptography import x509
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]


def _with_client_cert(app: Any, tls: dict[str, Any]) -> Any:
    async def app_with_tls(scope: Scope, receive: Any, send: Any) -> None:
        scope.setdefault("extensions", {})["tls"] = tls
        await app(scope, receive, send)

    return app_with_tls


class ClientCertProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol that also puts the peer's verified certificate in the scope."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            tls = {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)], "tls_version": ssl_object.version()}
            self.app = _with_client_cert(self.app, tls)


def client_certificate(scope: Scope) -> x509.Certificate | None:
    """The verified client certificate of the request, or None (plain HTTP or no TLS extension)."""
    chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
    return x509.load_pem_x509_certificate(chain[0].encode("ascii")) if chain else None
