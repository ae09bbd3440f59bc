"""The two chunk AEADs of the envelope: AES-256-GCM and SM4-GCM, behind one small interface.

Both use 12-byte nonces and 16-byte tags. ``open`` returns plaintext only after the tag verified:
AES-GCM's one-shot call does that itself; for SM4-GCM (only available as a streaming cipher in
``cryptography``) the plaintext is buffered until ``finalize`` has checked the tag.
Each suite also names the hash its key derivation uses (SHA-256 with AES, SM3 with SM4), so an
SM-only deployment stays on the Chinese standards for everything but ML-KEM.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fedledger.envelope.errors import EnvelopeFormatError, EnvelopeIntegrityError

NONCE_BYTES = 12
TAG_BYTES = 16


@dataclass(frozen=True)
class Suite:
    """One AEAD choice: its code in the envelope header, name, key length and KDF hash."""

    code: int
    name: str
    key_bytes: int
    hash_name: str

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return hashes.SHA256() if self.hash_name == "sha256" else hashes.SM3()

    def digest(self, data: bytes) -> bytes:
        h = hashes.Hash(self.hash_algorithm())
        h.update(data)
        return h.finalize()

    def derive(self, key: bytes, label: bytes) -> bytes:
        """HMAC(key, label) truncated to this suite's key length (a one-block HKDF-Expand)."""
        mac = crypto_hmac.HMAC(key, self.hash_algorithm())
        mac.update(label)
        return mac.finalize()[: self.key_bytes]

    def cipher(self, key: bytes) -> ChunkCipher:
        if len(key) != self.key_bytes:
            raise EnvelopeFormatError(f"{self.name} needs a {self.key_bytes}-byte key")
        return ChunkCipher(self, key)


AES_256_GCM = Suite(1, "AES-256-GCM", 32, "sha256")
SM4_GCM = Suite(2, "SM4-GCM", 16, "sm3")
SUITES = {suite.name: suite for suite in (AES_256_GCM, SM4_GCM)}
SUITES_BY_CODE = {suite.code: suite for suite in (AES_256_GCM, SM4_GCM)}


def suite_named(name: str) -> Suite:
    try:
        return SUITES[name]
    except KeyError:
        raise EnvelopeFormatError(f"unknown AEAD {name!r} (choose from {', '.join(SUITES)})") from None


class ChunkCipher:
    """seal/open under one key; ``open`` raises ``EnvelopeIntegrityError`` and releases nothing on a bad tag."""

    __slots__ = ("_aes", "_key", "suite")

    def __init__(self, suite: Suite, key: bytes) -> None:
        self.suite = suite
        self._key = bytes(key)
        self._aes = AESGCM(self._key) if suite is AES_256_GCM else None

    def seal(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """ciphertext || 16-byte tag."""
        if self._aes is not None:
            return self._aes.encrypt(nonce, plaintext, aad)
        enc = Cipher(algorithms.SM4(self._key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        body = enc.update(plaintext) + enc.finalize()
        return body + enc.tag

    def open(self, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
        if len(sealed) < TAG_BYTES:
            raise EnvelopeIntegrityError("sealed data is shorter than its tag")
        try:
            if self._aes is not None:
                return self._aes.decrypt(nonce, sealed, aad)
            dec = Cipher(algorithms.SM4(self._key), modes.GCM(nonce, sealed[-TAG_BYTES:])).decryptor()
            dec.authenticate_additional_data(aad)
            held = dec.update(sealed[:-TAG_BYTES])
            dec.finalize()  # verifies the tag; ``held`` is released only after this line
            return held
        except InvalidTag:
            raise EnvelopeIntegrityError(f"{self.suite.name} tag does not verify") from None

    def __repr__(self) -> str:
        return f"ChunkCipher({self.suite.name}, key=<hidden>)"
