"""Over mutual TLS, a signed request must come from the member its client certificate names.

The handshake proves the client holds a certificate from the consortium CA; the payload's EIP-191
signature proves which member's key signed it. Requiring the two to name the same address stops a
member from relaying (or replaying) another member's signed payloads under its own certificate,
and a stolen certificate alone from acting as its member.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from fedledger.protocol.session_auth import payload_signer
from fedledger.tls import TLSMaterialError, bound_address
from fedledger.tls.asgi import Scope, client_certificate


@dataclass(frozen=True)
class ClientBinding:
    """Checks signed requests against the client certificate's address on ``chain_id``."""

    chain_id: int

    def check(self, scope: Scope, payload: dict[str, Any], auth: str) -> None:
        """HTTP 403 unless the request's client certificate is bound to the payload's signer."""
        certificate = client_certificate(scope)
        if certificate is None:
            raise HTTPException(403, "no client certificate: the aggregator serves members over mutual TLS only")
        try:
            bound = bound_address(certificate, self.chain_id)
            signer = payload_signer(payload, auth)
        except (TLSMaterialError, ValueError) as exc:
            raise HTTPException(403, str(exc)) from None
        if signer.lower() != bound:
            raise HTTPException(
                403, f"the payload is signed by {signer}, but the client certificate is bound to {bound}"
            )
