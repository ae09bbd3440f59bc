"""SM9 digital signatures (GM/T 0044-2016 part 2): sign and verify.

verify() returns False for a signature that does not verify and raises ``SM9EncodingError`` only
for inputs that are not a signature at all (wrong type, malformed DER).
"""

from __future__ import annotations

from dataclasses import dataclass

from fedledger.sm9.curve import G1Point, g1_is_on_curve, g1_mul
from fedledger.sm9.encoding import signature_from_der, signature_to_der
from fedledger.sm9.errors import SM9EncodingError
from fedledger.sm9.fields import N, fp12_mul, fp12_to_bytes
from fedledger.sm9.hashing import h2
from fedledger.sm9.keys import SignMasterPublicKey, SignPrivateKey, random_scalar
from fedledger.sm9.pairing import final_exponentiation, miller_loop


@dataclass(frozen=True)
class Signature:
    """An SM9 signature (h, S): h in [1, N-1], S in G1."""

    h: int
    S: G1Point

    def to_der(self) -> bytes:
        return signature_to_der(self.h, self.S)

    @classmethod
    def from_der(cls, data: bytes) -> Signature:
        h, s = signature_from_der(data)
        return cls(h, s)


def _require_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise SM9EncodingError(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


def sign_with_nonce(key: SignPrivateKey, message: bytes, r: int) -> Signature | None:
    """One signing attempt with a given r; None when l = r - h = 0 (the caller draws a new r).

    Public only so the standard's worked example (fixed r) can be reproduced.
    """
    w = key.master_public_key.g_pow(r)
    h = h2(message + fp12_to_bytes(w))
    l_value = (r - h) % N
    if l_value == 0:
        return None
    return Signature(h, g1_mul(key.point, int(l_value)))


def sign(key: SignPrivateKey, message: bytes) -> Signature:
    """Sign ``message`` with an SM9 identity key."""
    message = _require_bytes(message, "message")
    while True:
        signature = sign_with_nonce(key, message, random_scalar())
        if signature is not None:
            return signature


def verify(
    master_public_key: SignMasterPublicKey,
    identity: str | bytes,
    message: bytes,
    signature: Signature | bytes,
) -> bool:
    """The standard's verification: h in [1, N-1], S in G1, H2(M || e(S, Q) * g^h) = h."""
    message = _require_bytes(message, "message")
    if not isinstance(signature, Signature):
        signature = Signature.from_der(_require_bytes(signature, "signature"))
    h, s = int(signature.h), signature.S
    if not 1 <= h < N or s is None or not g1_is_on_curve(s):
        return False
    _, lines = master_public_key.identity_point(identity)
    u = final_exponentiation(miller_loop(s, lines))
    w = fp12_mul(u, master_public_key.g_pow(h))
    return h2(message + fp12_to_bytes(w)) == h
