"""TLS settings for the two ends of a party-to-party connection, from the consortium's files.

Client (a node calling the aggregator): an ``ssl.SSLContext`` that trusts only the consortium CA,
checks the server's host name and presents the member's certificate; httpx takes it as
``verify=``. Server (the aggregator): uvicorn's standard options (``ssl_certfile``,
``ssl_keyfile``, ``ssl_keyfile_password``, ``ssl_ca_certs``, ``ssl_cert_reqs=CERT_REQUIRED``), so a
client without a certificate from the consortium CA is refused during the handshake.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from fedledger.tls.errors import TLSMaterialError
from fedledger.tls.party import TLSFiles


def _load_chain(context: ssl.SSLContext, cert_file: Path, key_file: Path, password: str) -> None:
    for path, what in ((cert_file, "TLS certificate"), (key_file, "TLS private key")):
        if not Path(path).is_file():
            raise TLSMaterialError(f"no {what} at {path}")
    try:
        context.load_cert_chain(cert_file, key_file, password)
    except ssl.SSLError:
        raise TLSMaterialError(
            f"cannot open {cert_file} with {key_file}: wrong password, or the key is not the certificate's"
        ) from None


def _trust(context: ssl.SSLContext, ca_file: Path) -> None:
    try:
        context.load_verify_locations(cafile=ca_file)
    except FileNotFoundError:
        raise TLSMaterialError(f"no consortium CA certificate at {ca_file}") from None
    except ssl.SSLError:
        raise TLSMaterialError(f"{ca_file} is not a PEM CA certificate") from None


def client_context(files: TLSFiles, password: str) -> ssl.SSLContext:
    """Trust the consortium CA only; present the member's certificate (mutual TLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the peer and its host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _trust(context, files.ca_file)
    _load_chain(context, files.cert_file, files.key_file, password)
    return context


def server_options(files: TLSFiles, password: str) -> dict[str, Any]:
    """uvicorn.Config keyword arguments for mutual TLS, checked first so a bad file is a clear error."""
    from fedledger.tls.asgi import ClientCertProtocol

    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _trust(probe, files.ca_file)
    _load_chain(probe, files.cert_file, files.key_file, password)
    return {
        "ssl_certfile": str(files.cert_file),
        "ssl_keyfile": str(files.key_file),
        "ssl_keyfile_password": password,
        "ssl_ca_certs": str(files.ca_file),
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        "http": ClientCertProtocol,
    }


def without_tls_hint(exc: TLSMaterialError) -> TLSMaterialError:
    """``exc`` with the way out a developer needs (a role cannot start without its TLS material)."""
    return TLSMaterialError(
        f"{exc} (needed for mutual TLS; --insecure-http runs without TLS, for local development only)"
    )


PLAIN_HTTP_WARNING = (
    "warning: --insecure-http: the aggregator's API runs over plain HTTP, unauthenticated and readable by "
    "anyone on the network; use it for local development only"
)
