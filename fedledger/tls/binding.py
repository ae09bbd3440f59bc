"""How a member's TLS client certificate names the member: its on-chain address and SM9 identity.

The certificate carries URI subject alternative names ``eth:<chain id>:<address lower-case>`` and
``urn:fedledger:sm9:<identity, percent-encoded>``. The aggregator reads the first back from the
verified peer certificate and requires it to be the address that signed the request, so a member
cannot act with another member's certificate, nor with a certificate made for another chain.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

from cryptography import x509

from fedledger.tls.errors import TLSMaterialError

_ETH_URI = re.compile(r"^eth:(\d+):(0x[0-9a-f]{40})$")
SM9_URI_PREFIX = "urn:fedledger:sm9:"


def address_uri(chain_id: int, address: str) -> str:
    """The URI SAN that binds a certificate to ``address`` on chain ``chain_id``."""
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise TLSMaterialError(f"not an Ethereum address: {address!r}")
    return f"eth:{int(chain_id)}:{address.lower()}"


def sm9_uri(identity: str) -> str:
    """The URI SAN that names the member's SM9 identity (any UTF-8, percent-encoded)."""
    return SM9_URI_PREFIX + quote(identity, safe="")


def _uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(uri) for uri in san.get_values_for_type(x509.UniformResourceIdentifier)]


def bound_address(cert: x509.Certificate, chain_id: int) -> str:
    """The lower-case address ``cert`` is bound to on ``chain_id``; TLSMaterialError if none or several."""
    found = {m.group(2) for u in _uris(cert) if (m := _ETH_URI.match(u)) and int(m.group(1)) == chain_id}
    if len(found) != 1:
        raise TLSMaterialError(f"the certificate is not bound to exactly one address on chain {chain_id}")
    return found.pop()


def bound_sm9_identity(cert: x509.Certificate) -> str | None:
    """The SM9 identity the certificate names, if any."""
    for uri in _uris(cert):
        if uri.startswith(SM9_URI_PREFIX):
            return unquote(uri[len(SM9_URI_PREFIX) :])
    return None
