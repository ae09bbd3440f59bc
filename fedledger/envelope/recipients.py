"""Recipients of envelopes: the public card a member registers, and the keys it holds to read.

A member is named by its SM9 identity (the KGC already issues those, so SM9-KEM needs no
certificate) and has an ML-KEM-768 key pair of its own. The public card (identity + ML-KEM
encapsulation key) is what the roster publishes; ``key_id`` (first 16 bytes of SHA3-256 of the
encapsulation key) lets envelopes name which ML-KEM key they were wrapped to, so a member that
rotates its ML-KEM key keeps reading old files with the old key file.

The private side (SM9 decryption key de and the 64-byte ML-KEM seed) lives in one password-encrypted
key file (mode 0600), written by the same keystore as the signing keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import mlkem

from fedledger.envelope.errors import EnvelopeKeyError
from fedledger.sm9.encryption_keys import EncryptPrivateKey
from fedledger.sm9.errors import SM9EncodingError
from fedledger.sm9.hashing import identity_bytes
from fedledger.sm9.keystore import read_secret_file, write_secret_file

MLKEM_PUBLIC_BYTES = 1184
MLKEM_SEED_BYTES = 64
KEY_ID_BYTES = 16
MAX_IDENTITY_BYTES = 1024
KIND_RECIPIENT = "fedledger-recipient-keys"


def mlkem_key_id(public_bytes: bytes) -> bytes:
    """The 16-byte name of an ML-KEM encapsulation key."""
    return hashlib.sha3_256(public_bytes).digest()[:KEY_ID_BYTES]


def check_identity(identity: str | bytes) -> bytes:
    ident = identity_bytes(identity)
    if not 1 <= len(ident) <= MAX_IDENTITY_BYTES:
        raise EnvelopeKeyError(f"a recipient identity is 1..{MAX_IDENTITY_BYTES} bytes")
    return ident


@dataclass(frozen=True)
class Recipient:
    """A member's public card: SM9 identity and ML-KEM-768 encapsulation key."""

    identity: bytes
    mlkem_public: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", check_identity(self.identity))
        if len(self.mlkem_public) != MLKEM_PUBLIC_BYTES:
            raise EnvelopeKeyError(f"an ML-KEM-768 public key is {MLKEM_PUBLIC_BYTES} bytes")
        try:
            mlkem.MLKEM768PublicKey.from_public_bytes(self.mlkem_public)
        except ValueError as exc:
            raise EnvelopeKeyError("not a valid ML-KEM-768 public key") from exc

    @property
    def key_id(self) -> bytes:
        return mlkem_key_id(self.mlkem_public)

    def to_json(self) -> str:
        return json.dumps(
            {"identity": self.identity.hex(), "mlkem768_public": self.mlkem_public.hex(), "key_id": self.key_id.hex()},
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Recipient:
        try:
            data = json.loads(text)
            card = cls(bytes.fromhex(data["identity"]), bytes.fromhex(data["mlkem768_public"]))
            stated = data.get("key_id")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, EnvelopeKeyError):
                raise
            raise EnvelopeKeyError("malformed recipient card (expected identity and mlkem768_public in hex)") from exc
        if stated is not None and stated != card.key_id.hex():
            raise EnvelopeKeyError("recipient card: key_id does not match the ML-KEM public key")
        return card


class RecipientKeys:
    """What a member needs to open envelopes: its SM9 decryption key and one ML-KEM-768 private key."""

    __slots__ = ("_mlkem", "public", "sm9_key")

    def __init__(self, sm9_key: EncryptPrivateKey, mlkem_seed: bytes) -> None:
        if len(mlkem_seed) != MLKEM_SEED_BYTES:
            raise EnvelopeKeyError(f"an ML-KEM-768 seed is {MLKEM_SEED_BYTES} bytes")
        self.sm9_key = sm9_key
        self._mlkem = mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes(mlkem_seed))
        self.public = Recipient(sm9_key.identity, self._mlkem.public_key().public_bytes_raw())

    @classmethod
    def generate(cls, sm9_key: EncryptPrivateKey) -> RecipientKeys:
        """A fresh ML-KEM key pair next to an SM9 decryption key (also how an ML-KEM key is rotated)."""
        return cls(sm9_key, mlkem.MLKEM768PrivateKey.generate().private_bytes_raw())

    @property
    def identity(self) -> bytes:
        return self.sm9_key.identity

    def mlkem_decapsulate(self, ciphertext: bytes) -> bytes:
        return self._mlkem.decapsulate(ciphertext)

    def save(self, path: str | Path, password: str | bytes) -> None:
        public, secret = self.sm9_key.file_fields()
        public = dict(public, mlkem768_public=self.public.mlkem_public.hex())
        secret = dict(secret, mlkem768_seed=self._mlkem.private_bytes_raw().hex())
        write_secret_file(path, KIND_RECIPIENT, public, secret, password)

    @classmethod
    def load(cls, path: str | Path, password: str | bytes) -> RecipientKeys:
        public, secret = read_secret_file(path, KIND_RECIPIENT, password)
        try:
            keys = cls(EncryptPrivateKey.from_file_fields(public, secret), bytes.fromhex(secret["mlkem768_seed"]))
        except SM9EncodingError as exc:  # before ValueError: it is one
            raise EnvelopeKeyError(f"{path}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise EnvelopeKeyError(f"{path}: malformed recipient key file") from exc
        if keys.public.mlkem_public.hex() != public.get("mlkem768_public"):
            raise EnvelopeKeyError(f"{path}: ML-KEM public key in the header does not match the secret")
        return keys

    def __repr__(self) -> str:
        return f"RecipientKeys(identity={self.identity!r}, key_id={self.public.key_id.hex()}, secret=<hidden>)"
