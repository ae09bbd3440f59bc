"""Hybrid (X25519 + ML-KEM-768) keys: pairwise mask keys and the member-to-member share channel.

Why hybrid: masked updates and encrypted shares are published, so an adversary who records them
now and breaks X25519 later must still face ML-KEM (and the other way round). Each secret is
``SHA3-256(label || dh || kem_secret || transcript)``, the transcript holding the KEM ciphertext,
both public keys, the two member ids and the round (X-Wing-style binding of everything public).
Why not ``fedledger.envelope.hybrid`` (issue 11): it wraps a key to a long-term SM9 identity plus
ML-KEM; here keys are round-scoped and a pair secret needs a two-sided agreement (X25519 DH) that
either side's Shamir-shared material can rebuild. Its combiner has the same shape; when the
envelope grows a round-key API, ``_combine`` and ``HybridKeyPair`` are the two places to switch.

The X25519 half is static-static between the two members' advertised keys, so a share sealed
by member i opens only for j and only as coming from i (sender authentication); the ML-KEM half
is a fresh encapsulation to j.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedledger.secagg.errors import SecAggInputError

X25519_BYTES = 32
MLKEM_SEED_BYTES = 64
MLKEM_PUBLIC_BYTES = 1184
MLKEM_CIPHERTEXT_BYTES = 1088
SECRET_BYTES = X25519_BYTES + MLKEM_SEED_BYTES
_NONCE = bytes(12)  # every sealing key is fresh (new encapsulation), so a fixed nonce is safe


@dataclass(frozen=True)
class HybridPublic:
    """A member's advertised public key pair: X25519 and ML-KEM-768 encapsulation key."""

    x25519: bytes
    mlkem: bytes

    def __post_init__(self) -> None:
        if len(self.x25519) != X25519_BYTES or len(self.mlkem) != MLKEM_PUBLIC_BYTES:
            raise SecAggInputError("hybrid public key has the wrong length")

    def to_bytes(self) -> bytes:
        return self.x25519 + self.mlkem


class HybridKeyPair:
    """One X25519 key and one ML-KEM-768 key; the secret half is 96 bytes (what Shamir shares)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_BYTES:
            raise SecAggInputError("hybrid secret key has the wrong length")
        self._x = X25519PrivateKey.from_private_bytes(secret[:X25519_BYTES])
        self._kem = MLKEM768PrivateKey.from_seed_bytes(secret[X25519_BYTES:])
        self.secret = secret
        self.public = HybridPublic(self._x.public_key().public_bytes_raw(), self._kem.public_key().public_bytes_raw())

    @classmethod
    def generate(cls) -> HybridKeyPair:
        x = X25519PrivateKey.generate().private_bytes_raw()
        return cls(x + MLKEM768PrivateKey.generate().private_bytes_raw())

    def dh(self, peer: HybridPublic) -> bytes:
        try:
            return self._x.exchange(X25519PublicKey.from_public_bytes(peer.x25519))
        except ValueError as exc:
            raise SecAggInputError("peer X25519 key is degenerate") from exc

    def decapsulate(self, ciphertext: bytes) -> bytes:
        if len(ciphertext) != MLKEM_CIPHERTEXT_BYTES:
            raise SecAggInputError("ML-KEM ciphertext has the wrong length")
        return self._kem.decapsulate(ciphertext)


def encapsulate(peer: HybridPublic) -> tuple[bytes, bytes]:
    """(ML-KEM shared secret, ciphertext) to ``peer``'s encapsulation key."""
    try:
        return MLKEM768PublicKey.from_public_bytes(peer.mlkem).encapsulate()
    except ValueError as exc:
        raise SecAggInputError("peer ML-KEM key is malformed") from exc


def _combine(label: bytes, dh: bytes, kem_secret: bytes, transcript: bytes) -> bytes:
    return hashlib.sha3_256(b"fedledger-secagg-hybrid/" + label + b"\x00" + dh + kem_secret + transcript).digest()


def _transcript(ciphertext: bytes, low: HybridPublic, high: HybridPublic, i: int, j: int, round_index: int) -> bytes:
    ids = b"".join(v.to_bytes(8, "big") for v in (i, j, round_index))
    return ciphertext + low.to_bytes() + high.to_bytes() + ids


def pair_secret(
    dh: bytes,
    kem_secret: bytes,
    ciphertext: bytes,
    low: HybridPublic,
    high: HybridPublic,
    pair: tuple[int, int],
    round_index: int,
) -> bytes:
    """The 256-bit pairwise mask secret of members ``pair`` = (lower id, higher id)."""
    return _combine(b"mask", dh, kem_secret, _transcript(ciphertext, low, high, *pair, round_index))


def seal(sender: HybridKeyPair, recipient: HybridPublic, ids: tuple[int, int], round_index: int, data: bytes) -> bytes:
    """Encrypt ``data`` from member ids[0] to ids[1]: ML-KEM ciphertext || AES-256-GCM."""
    kem_secret, ciphertext = encapsulate(recipient)
    transcript = _transcript(ciphertext, sender.public, recipient, *ids, round_index)
    key = _combine(b"share", sender.dh(recipient), kem_secret, transcript)
    return ciphertext + AESGCM(key).encrypt(_NONCE, data, transcript)


def open_sealed(
    recipient: HybridKeyPair, sender: HybridPublic, ids: tuple[int, int], round_index: int, sealed: bytes
) -> bytes:
    """Decrypt what :func:`seal` made; any change to any byte, key or id fails."""
    ciphertext, body = sealed[:MLKEM_CIPHERTEXT_BYTES], sealed[MLKEM_CIPHERTEXT_BYTES:]
    transcript = _transcript(ciphertext, sender, recipient.public, *ids, round_index)
    key = _combine(b"share", recipient.dh(sender), recipient.decapsulate(ciphertext), transcript)
    try:
        return AESGCM(key).decrypt(_NONCE, body, transcript)
    except InvalidTag as exc:
        raise SecAggInputError(f"sealed shares from member {ids[0]} do not open") from exc
