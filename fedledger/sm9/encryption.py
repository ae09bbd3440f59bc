"""SM9 identity-based key encapsulation and encryption (GM/T 0044-2016 part 4).

To an identity ID under Ppub-e: QB = [H1(ID||03)]P1 + Ppub-e, C1 = [r]QB, w = e(Ppub-e, P2)^r and
K = KDF(C1 || w || ID, klen) with the SM3 counter KDF (C1 as x || y, w as 384 bytes). The holder of
de = [ke / (H1 + ke)]P2 recomputes w = e(C1, de). The KEM returns K; encryption uses the KDF-stream
cipher: K = K1 || K2 (K2 32 bytes), C2 = M xor K1, C3 = MAC(K2, C2), ciphertext C1 || C3 || C2 (or
GmSSL's DER).

Two MACs exist in practice: the standard's MAC(K2, Z) = SM3(Z || K2) (``MAC_SM3``, which reproduces
the standard's worked example) and GmSSL 3.x's HMAC-SM3(K2, Z) (``MAC_HMAC_SM3``, found by testing
against GmSSL 3.2: its ciphertexts only open with it). Everything else, the KEM included, is the same.

Decryption and decapsulation check C1 lies on the curve (G1 has cofactor 1). Decryption returns no
plaintext unless C3 matches, and every failure raises the same ``SM9DecryptionError`` so a caller
learns nothing about which check failed.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac

from fedledger.digests import sm3
from fedledger.sm9.curve import G1Point
from fedledger.sm9.encoding import g1_to_bytes
from fedledger.sm9.encryption_der import MAC_BYTES, ciphertext_from_der, ciphertext_to_der
from fedledger.sm9.encryption_keys import EncryptMasterPublicKey, EncryptPrivateKey, g1_point_from_bytes
from fedledger.sm9.errors import SM9EncodingError, SM9Error
from fedledger.sm9.fields import N, fp12_to_bytes
from fedledger.sm9.hashing import identity_bytes
from fedledger.sm9.keys import random_scalar
from fedledger.sm9.pairing import final_exponentiation, miller_loop

MAX_KEY_BYTES = 1 << 16  # far above any use here; keeps a hostile klen from looping for hours
MAX_MESSAGE_BYTES = 1 << 16  # SM9 encryption is for keys and short messages; bulk data uses the envelope


class SM9DecryptionError(SM9Error):
    """A ciphertext or encapsulation does not open under this key (tampered, wrong key or identity)."""


def sm3_kdf(z: bytes, klen: int) -> bytes:
    """The SM3 counter KDF of GM/T 0044 (and SM2): SM3(Z || ct) for ct = 1, 2, ... (32-bit big-endian)."""
    out = bytearray()
    counter = 1
    while len(out) < klen:
        out += sm3(z + counter.to_bytes(4, "big"))
        counter += 1
    return bytes(out[:klen])


def _kdf_input(c1: G1Point, w_bytes: bytes, identity: bytes) -> bytes:
    return g1_to_bytes(c1)[1:] + w_bytes + identity


def _check_klen(klen: int) -> None:
    if not isinstance(klen, int) or not 1 <= klen <= MAX_KEY_BYTES:
        raise SM9EncodingError(f"key length must be 1..{MAX_KEY_BYTES} bytes")


def _encapsulate_with(mpk: EncryptMasterPublicKey, identity: bytes, klen: int, r: int) -> tuple[bytes, G1Point]:
    c1 = mpk.recipient_point_mul(identity, r)
    w = mpk.g_pow(r)
    return sm3_kdf(_kdf_input(c1, fp12_to_bytes(w), identity), klen), c1


def _shared_w(key: EncryptPrivateKey, c1: G1Point) -> bytes:
    return fp12_to_bytes(final_exponentiation(miller_loop(c1, key.lines())))


def encapsulate(
    mpk: EncryptMasterPublicKey, identity: str | bytes, klen: int, *, r: int | None = None
) -> tuple[bytes, bytes]:
    """(K, C) for ``identity``: K is ``klen`` bytes, C the 64-byte encapsulation x || y.

    ``r`` is for the standard's worked example only; normally it is drawn here. The standard
    redraws r when K is all zero.
    """
    _check_klen(klen)
    ident = identity_bytes(identity)
    while True:
        nonce = random_scalar() if r is None else int(r)
        if not 1 <= nonce < N:
            raise SM9EncodingError("r out of range [1, N-1]")
        k, c1 = _encapsulate_with(mpk, ident, klen, nonce)
        if any(k) or r is not None:
            return k, g1_to_bytes(c1)[1:]


def decapsulate(key: EncryptPrivateKey, encapsulation: bytes, klen: int) -> bytes:
    """K from C = x || y (64 bytes; 04 || x || y also accepted) under the key's own identity."""
    _check_klen(klen)
    try:
        c1 = g1_point_from_bytes(bytes(encapsulation), "SM9 encapsulation")
    except (SM9EncodingError, TypeError) as exc:
        raise SM9DecryptionError("SM9 encapsulation does not open: not a valid point") from exc
    k = sm3_kdf(_kdf_input(c1, _shared_w(key, c1), key.identity), klen)
    if not any(k):
        raise SM9DecryptionError("SM9 encapsulation does not open: all-zero key")
    return k


@dataclass(frozen=True)
class Ciphertext:
    """An SM9 ciphertext with the KDF stream cipher: C1 (point), C3 (32-byte MAC), C2 (masked message)."""

    c1: G1Point
    c3: bytes
    c2: bytes

    def to_bytes(self) -> bytes:
        """C1 || C3 || C2 with C1 as x || y, as the standard prints it."""
        return g1_to_bytes(self.c1)[1:] + self.c3 + self.c2

    @classmethod
    def from_bytes(cls, data: bytes) -> Ciphertext:
        if not isinstance(data, bytes | bytearray) or len(data) < 64 + MAC_BYTES + 1:
            raise SM9EncodingError("SM9 ciphertext C1 || C3 || C2 is too short")
        data = bytes(data)
        return cls(g1_point_from_bytes(data[:64], "SM9 ciphertext C1"), data[64:96], data[96:])

    def to_der(self) -> bytes:
        """GmSSL 3.x's SEQUENCE { 0, C1, C3, C2 }."""
        return ciphertext_to_der(self.c1, self.c3, self.c2)

    @classmethod
    def from_der(cls, data: bytes) -> Ciphertext:
        return cls(*ciphertext_from_der(data))


MAC_SM3 = "sm3"  # GM/T 0044-2016 part 4: SM3(C2 || K2)
MAC_HMAC_SM3 = "hmac-sm3"  # GmSSL 3.x: HMAC-SM3(K2, C2)


def _mac(kind: str, k2: bytes, c2: bytes) -> bytes:
    if kind == MAC_SM3:
        return sm3(c2 + k2)
    if kind == MAC_HMAC_SM3:
        mac = crypto_hmac.HMAC(k2, hashes.SM3())
        mac.update(c2)
        return mac.finalize()
    raise SM9EncodingError(f"unknown SM9 encryption MAC {kind!r} (expected {MAC_SM3!r} or {MAC_HMAC_SM3!r})")


def encrypt(
    mpk: EncryptMasterPublicKey,
    identity: str | bytes,
    message: bytes,
    *,
    mac: str = MAC_SM3,
    r: int | None = None,
) -> Ciphertext:
    """Encrypt a short ``message`` to ``identity`` (KDF stream cipher); ``mac=MAC_HMAC_SM3`` for GmSSL 3.x."""
    _mac(mac, b"", b"")  # reject an unknown MAC before any work
    if not isinstance(message, bytes | bytearray) or not 1 <= len(message) <= MAX_MESSAGE_BYTES:
        raise SM9EncodingError(f"SM9 encryption takes 1..{MAX_MESSAGE_BYTES} bytes of message")
    ident = identity_bytes(identity)
    klen = len(message) + MAC_BYTES
    while True:
        nonce = random_scalar() if r is None else int(r)
        if not 1 <= nonce < N:
            raise SM9EncodingError("r out of range [1, N-1]")
        k, c1 = _encapsulate_with(mpk, ident, klen, nonce)
        k1, k2 = k[: len(message)], k[len(message) :]
        if any(k1) or r is not None:
            break
    c2 = bytes(a ^ b for a, b in zip(message, k1, strict=True))
    return Ciphertext(c1, _mac(mac, k2, c2), c2)


def decrypt(key: EncryptPrivateKey, ciphertext: Ciphertext | bytes, *, mac: str = MAC_SM3) -> bytes:
    """The message, or ``SM9DecryptionError``; ``bytes`` input is GmSSL's DER (``Ciphertext.from_bytes``
    reads the standard's raw C1 || C3 || C2). ``mac`` must be the one the sender used."""
    _mac(mac, b"", b"")
    if not isinstance(ciphertext, Ciphertext):
        try:
            ciphertext = Ciphertext.from_der(bytes(ciphertext))
        except (SM9EncodingError, TypeError) as exc:
            raise SM9DecryptionError("SM9 ciphertext does not open: malformed") from exc
    if ciphertext.c1 is None or len(ciphertext.c3) != MAC_BYTES or not ciphertext.c2:
        raise SM9DecryptionError("SM9 ciphertext does not open: malformed")
    c2 = ciphertext.c2
    k = sm3_kdf(_kdf_input(ciphertext.c1, _shared_w(key, ciphertext.c1), key.identity), len(c2) + MAC_BYTES)
    k1, k2 = k[: len(c2)], k[len(c2) :]
    if not any(k1) or not hmac.compare_digest(_mac(mac, k2, c2), ciphertext.c3):
        raise SM9DecryptionError("SM9 ciphertext does not open under this key")
    return bytes(a ^ b for a, b in zip(c2, k1, strict=True))
