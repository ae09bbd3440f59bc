"""Hybrid key wrapping: a content key sealed per recipient under SM9-KEM and ML-KEM-768 together.

For recipient (ID, ek):

    (K_sm9, C_sm9)   = SM9-KEM encapsulation to ID under the KGC's Ppub-e   (32 bytes, 64-byte C)
    (K_pq,  C_pq)    = ML-KEM-768 encapsulation to ek                        (32 bytes, 1088-byte C)
    KEK = SHA3-256("fedledger/hybrid-kem/v1" || K_pq || K_sm9 || C_sm9 || C_pq || ek || len(ID) || ID)
    sealed = AEAD(KEK truncated to the suite's key length, nonce 0^12, content key, aad = context || ID)

The combiner is X-Wing's shape (SHA3-256 over both secrets and the classical ciphertext) with more
bound in: the ML-KEM ciphertext and key, and the recipient's identity, so an entry can be neither
moved to another recipient nor re-targeted to another key. An attacker learns KEK only by breaking
both KEMs: each secret is a full-entropy input to the hash. The nonce is fixed because every KEK
is fresh (two random encapsulations) and seals exactly one message. ``context`` is the envelope's
fixed header (version, suite, chunk size, file id), so a wrapped key opens only in its own file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import mlkem

from fedledger.envelope.aead import NONCE_BYTES, TAG_BYTES, Suite
from fedledger.envelope.errors import EnvelopeAccessError, EnvelopeIntegrityError, EnvelopeKeyError
from fedledger.envelope.recipients import KEY_ID_BYTES, Recipient, RecipientKeys
from fedledger.sm9.encryption import SM9DecryptionError, decapsulate, encapsulate
from fedledger.sm9.encryption_keys import EncryptMasterPublicKey

CONTENT_KEY_BYTES = 32
SM9_CAPSULE_BYTES = 64
MLKEM_CIPHERTEXT_BYTES = 1088
SEALED_KEY_BYTES = CONTENT_KEY_BYTES + TAG_BYTES
_LABEL = b"fedledger/hybrid-kem/v1"
_ZERO_NONCE = bytes(NONCE_BYTES)


@dataclass(frozen=True)
class WrappedKey:
    """One recipient's entry: who, which ML-KEM key, both encapsulations and the sealed content key."""

    identity: bytes
    key_id: bytes
    sm9_capsule: bytes
    mlkem_ciphertext: bytes
    sealed_key: bytes

    def __post_init__(self) -> None:
        sizes = (
            (self.key_id, KEY_ID_BYTES, "key id"),
            (self.sm9_capsule, SM9_CAPSULE_BYTES, "SM9 encapsulation"),
            (self.mlkem_ciphertext, MLKEM_CIPHERTEXT_BYTES, "ML-KEM ciphertext"),
            (self.sealed_key, SEALED_KEY_BYTES, "sealed key"),
        )
        for value, size, what in sizes:
            if len(value) != size:
                raise EnvelopeKeyError(f"wrapped key: {what} must be {size} bytes")


def combine(
    mlkem_secret: bytes, sm9_secret: bytes, sm9_capsule: bytes, mlkem_ciphertext: bytes, mlkem_public: bytes,
    identity: bytes,
) -> bytes:
    """The KEK from both shared secrets, both ciphertexts, the ML-KEM key and the identity (32 bytes)."""
    h = hashlib.sha3_256(_LABEL)
    for part in (mlkem_secret, sm9_secret, sm9_capsule, mlkem_ciphertext, mlkem_public):
        h.update(part)
    h.update(len(identity).to_bytes(2, "big") + identity)
    return h.digest()


def wrap(
    content_key: bytes, recipient: Recipient, sm9_master: EncryptMasterPublicKey, suite: Suite, context: bytes
) -> WrappedKey:
    """Seal ``content_key`` for ``recipient`` (fresh randomness for both KEMs on every call)."""
    if len(content_key) != CONTENT_KEY_BYTES:
        raise EnvelopeKeyError(f"a content key is {CONTENT_KEY_BYTES} bytes")
    sm9_secret, sm9_capsule = encapsulate(sm9_master, recipient.identity, 32)
    mlkem_secret, mlkem_ciphertext = mlkem.MLKEM768PublicKey.from_public_bytes(recipient.mlkem_public).encapsulate()
    kek = combine(mlkem_secret, sm9_secret, sm9_capsule, mlkem_ciphertext, recipient.mlkem_public, recipient.identity)
    sealed = suite.cipher(kek[: suite.key_bytes]).seal(_ZERO_NONCE, content_key, context + recipient.identity)
    return WrappedKey(recipient.identity, recipient.key_id, sm9_capsule, mlkem_ciphertext, sealed)


def unwrap(entry: WrappedKey, keys: RecipientKeys, suite: Suite, context: bytes) -> bytes:
    """The content key, or ``EnvelopeAccessError`` (wrong recipient, wrong key, or any altered byte)."""
    if entry.identity != keys.identity or entry.key_id != keys.public.key_id:
        raise EnvelopeAccessError("this wrapped key is for another recipient or another ML-KEM key")
    try:
        sm9_secret = decapsulate(keys.sm9_key, entry.sm9_capsule, 32)
        mlkem_secret = keys.mlkem_decapsulate(entry.mlkem_ciphertext)  # implicit rejection: never raises
        kek = combine(
            mlkem_secret, sm9_secret, entry.sm9_capsule, entry.mlkem_ciphertext, keys.public.mlkem_public,
            keys.identity,
        )
        return suite.cipher(kek[: suite.key_bytes]).open(_ZERO_NONCE, entry.sealed_key, context + keys.identity)
    except (SM9DecryptionError, EnvelopeIntegrityError, ValueError):
        raise EnvelopeAccessError("the wrapped content key does not open with these keys") from None
