"""How a node reaches the aggregator: https with mutual TLS, or plain http when explicitly asked.

With TLS the node trusts only the consortium CA (not the system's CAs), checks the aggregator's host
name against its certificate, and presents its own member certificate; httpx takes all of it as
one ``ssl.SSLContext`` (``verify=``), its documented way since httpx 0.28.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from fedledger.tls import TLSMaterialError, check_member_certificate, load_certificate
from fedledger.tls.contexts import client_context, without_tls_hint
from node.config import NodeConfig


def aggregator_transport(
    config: NodeConfig, base: Path, password: str, insecure_http: bool, chain_id: int, address: str
) -> tuple[str, ssl.SSLContext | None]:
    """The aggregator's URL and the TLS context to reach it (None: plain HTTP, only if ``insecure_http``).

    The node's certificate must be bound to its own ``address`` on ``chain_id``: the aggregator would
    refuse every signed post otherwise, so a mixed-up certificate is an error at start, not a 403 later.
    """
    parts = urlsplit(config.aggregator_url)
    if insecure_http:
        return urlunsplit(parts._replace(scheme="http")), None
    if parts.scheme != "https":
        raise TLSMaterialError(
            f"aggregator_url {config.aggregator_url} is plain HTTP: use https:// (mutual TLS), "
            "or pass --insecure-http for local development"
        )
    files = config.tls_files(base)
    try:
        context = client_context(files, password)
    except TLSMaterialError as exc:
        raise without_tls_hint(exc) from None
    check_member_certificate(load_certificate(files.ca_file), load_certificate(files.cert_file), chain_id, address)
    return config.aggregator_url, context


def aggregator_client(tls: ssl.SSLContext | None, timeout: float) -> httpx.Client:
    """An httpx client for the aggregator's API (``tls`` None only for plain-HTTP development)."""
    return httpx.Client(timeout=timeout, verify=tls if tls is not None else True)
