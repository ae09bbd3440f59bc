"""SM9 encryption keys (GM/T 0044-2016 part 4): the KGC's encryption master key pair and user keys.

The encryption master key is separate from the signing one (ke, not ks): Ppub-e = [ke]P1 lies in G1
and a user's decryption key de = [ke / (H1(ID||hid) + ke)]P2 lies in G2, with hid = 0x03. The
master public key caches what every encryption under it needs again: g = e(Ppub-e, P2) with a
fixed-base table for g^r, and a fixed-base table for multiples of Ppub-e. A private key caches the
Miller-loop lines of de, so a decryption pays one Miller loop and one final exponentiation.
"""

from __future__ import annotations

import threading
from pathlib import Path

from gmpy2 import mpz

from fedledger.fileio import PUBLIC_MODE, atomic_write_text
from fedledger.sm9.curve import P2, FixedBase, G1Point, G2Point, g1_add, p1_mul, p2_mul
from fedledger.sm9.encoding import g1_from_bytes, g1_to_bytes, g2_from_bytes, g2_to_bytes, pem_decode, pem_encode
from fedledger.sm9.encryption_der import (
    PEM_LABEL_ENC_MASTER_PUBLIC,
    enc_master_key_from_der,
    enc_master_key_to_der,
    enc_master_public_key_from_der,
    enc_master_public_key_to_der,
    enc_private_key_from_der,
    enc_private_key_to_der,
)
from fedledger.sm9.errors import SM9EncodingError, SM9KeyError
from fedledger.sm9.fields import Fp12, N
from fedledger.sm9.gt import GTFixedBase
from fedledger.sm9.hashing import h1, identity_bytes
from fedledger.sm9.keys import fp_inv_mod_n, random_scalar
from fedledger.sm9.keystore import read_secret_file, write_secret_file
from fedledger.sm9.pairing import G2Lines, final_exponentiation, miller_loop, pairing

HID_ENC = b"\x03"
KIND_ENC_MASTER = "sm9-enc-master-key"
KIND_ENC_USER = "sm9-enc-private-key"
_TABLE_LOCK = threading.Lock()  # tables are built once even if worker threads race for them


def identity_hash(identity: str | bytes) -> int:
    """H1(ID || hid, N) with the encryption hid 0x03."""
    return h1(identity_bytes(identity) + HID_ENC)


class EncryptMasterPublicKey:
    """Ppub-e = [ke]P1, with the tables every encryption under it reuses."""

    __slots__ = ("_g_table", "_point_table", "point")

    def __init__(self, point: G1Point) -> None:
        if point is None:
            raise SM9EncodingError("the encryption master public key cannot be the point at infinity")
        self.point = point
        self._g_table: GTFixedBase | None = None
        self._point_table: FixedBase[G1Point] | None = None

    # -- encodings (GmSSL 3.x)
    def to_der(self) -> bytes:
        return enc_master_public_key_to_der(self.point)

    @classmethod
    def from_der(cls, data: bytes) -> EncryptMasterPublicKey:
        return cls(enc_master_public_key_from_der(data))

    def to_pem(self) -> str:
        return pem_encode(PEM_LABEL_ENC_MASTER_PUBLIC, self.to_der())

    @classmethod
    def from_pem(cls, text: str | bytes) -> EncryptMasterPublicKey:
        return cls.from_der(pem_decode(PEM_LABEL_ENC_MASTER_PUBLIC, text))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_pem(), PUBLIC_MODE)

    @classmethod
    def load(cls, path: str | Path) -> EncryptMasterPublicKey:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise SM9EncodingError(f"{path}: cannot read encryption master public key ({exc.strerror})") from exc
        try:
            return cls.from_pem(text)
        except SM9EncodingError as exc:
            raise SM9EncodingError(f"{path}: {exc}") from exc

    # -- cached values
    def g_pow(self, r: int) -> Fp12:
        """g^r with g = e(Ppub-e, P2), from a fixed-base table built on first use."""
        if self._g_table is None:
            with _TABLE_LOCK:
                if self._g_table is None:
                    self._g_table = GTFixedBase(pairing(self.point, P2))
        return self._g_table.pow(r)

    def recipient_point_mul(self, identity: str | bytes, r: int) -> G1Point:
        """[r]QB with QB = [H1(ID||hid)]P1 + Ppub-e, as [r*h1]P1 + [r]Ppub-e (two fixed-base products)."""
        if self._point_table is None:
            with _TABLE_LOCK:
                if self._point_table is None:
                    self._point_table = FixedBase(self.point, g1_add)
        return g1_add(p1_mul(r * identity_hash(identity) % N), self._point_table.mul(r))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EncryptMasterPublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(g1_to_bytes(self.point))

    def __repr__(self) -> str:
        return f"EncryptMasterPublicKey({g1_to_bytes(self.point)[1:17].hex()}...)"


class EncryptMasterKey:
    """The KGC's encryption master secret ke in [1, N-1] and its public key."""

    __slots__ = ("_ke", "public_key")

    def __init__(self, ke: int) -> None:
        ke = int(ke)
        if not 1 <= ke < N:
            raise SM9KeyError("encryption master secret out of range [1, N-1]")
        self._ke = mpz(ke)
        self.public_key = EncryptMasterPublicKey(p1_mul(ke))

    @classmethod
    def generate(cls) -> EncryptMasterKey:
        return cls(random_scalar())

    def secret_scalar(self) -> int:
        """ke itself; only for key extraction and the encrypted file."""
        return int(self._ke)

    def to_der(self) -> bytes:
        """GmSSL's SM9 encryption master key DER (holds the secret: never log it)."""
        return enc_master_key_to_der(int(self._ke), self.public_key.point)

    @classmethod
    def from_der(cls, data: bytes) -> EncryptMasterKey:
        ke, point = enc_master_key_from_der(data)
        key = cls(ke)
        if key.public_key.point != point:
            raise SM9EncodingError("SM9 encryption master key DER: public point does not match the secret")
        return key

    def save(self, path: str | Path, password: str | bytes) -> None:
        write_secret_file(
            path,
            KIND_ENC_MASTER,
            {"master_public_key": self.public_key.to_der().hex()},
            {"ke": f"{int(self._ke):064x}"},
            password,
        )

    @classmethod
    def load(cls, path: str | Path, password: str | bytes) -> EncryptMasterKey:
        public, secret = read_secret_file(path, KIND_ENC_MASTER, password)
        try:
            key = cls(int(secret["ke"], 16))
        except (KeyError, TypeError, ValueError) as exc:
            raise SM9EncodingError(f"{path}: malformed encryption master key payload") from exc
        if key.public_key.to_der().hex() != public.get("master_public_key"):
            raise SM9EncodingError(f"{path}: master public key in the header does not match the secret")
        return key

    def __repr__(self) -> str:
        return f"EncryptMasterKey(public_key={self.public_key!r}, secret=<hidden>)"


class EncryptPrivateKey:
    """A user's decryption key de = [t2]P2 for one identity, with its master public key."""

    __slots__ = ("_lines", "_point", "identity", "master_public_key")

    def __init__(self, identity: str | bytes, point: G2Point, master_public_key: EncryptMasterPublicKey) -> None:
        if point is None:
            raise SM9KeyError("a decryption key cannot be the point at infinity")
        self.identity = identity_bytes(identity)
        self._point = point
        self._lines: G2Lines | None = None
        self.master_public_key = master_public_key

    @property
    def point(self) -> G2Point:
        return self._point

    def lines(self) -> G2Lines:
        """The Miller-loop lines of de, computed once."""
        if self._lines is None:
            self._lines = G2Lines(self._point)
        return self._lines

    def checked(self) -> EncryptPrivateKey:
        """This key, after checking it belongs to its identity and master key: e(QB, de) = g.

        With QB = [H1(ID||03) + ke]P1 and de = [ke / (H1 + ke)]P2 the pairing is e(P1, P2)^ke, which
        is g = e(Ppub-e, P2). A key read from bytes is checked, so a file or DER that pairs a key
        with the wrong identity fails on load instead of failing every decryption later.
        """
        qb = g1_add(p1_mul(identity_hash(self.identity)), self.master_public_key.point)
        if qb is None or final_exponentiation(miller_loop(qb, self.lines())) != self.master_public_key.g_pow(1):
            raise SM9KeyError("this decryption key does not belong to its identity under this master public key")
        return self

    def to_der(self) -> bytes:
        """GmSSL's SM9 encryption private key DER (holds the secret: never log it)."""
        return enc_private_key_to_der(self._point, self.master_public_key.point)

    @classmethod
    def from_der(cls, identity: str | bytes, data: bytes) -> EncryptPrivateKey:
        """GmSSL's DER does not name the identity: the caller supplies it."""
        de, ppub = enc_private_key_from_der(data)
        return cls(identity, de, EncryptMasterPublicKey(ppub)).checked()

    def save(self, path: str | Path, password: str | bytes) -> None:
        write_secret_file(path, KIND_ENC_USER, *self.file_fields(), password)

    def file_fields(self) -> tuple[dict[str, str], dict[str, str]]:
        """(public header, secret payload) for an encrypted key file; also used by combined key files."""
        public = {"identity": self.identity.hex(), "enc_master_public_key": self.master_public_key.to_der().hex()}
        return public, {"de": g2_to_bytes(self._point).hex()}

    @classmethod
    def from_file_fields(cls, public: dict[str, str], secret: dict[str, str]) -> EncryptPrivateKey:
        """Inverse of ``file_fields``; raises ``SM9EncodingError`` on anything malformed."""
        try:
            identity = bytes.fromhex(public["identity"])
            mpk = EncryptMasterPublicKey.from_der(bytes.fromhex(public["enc_master_public_key"]))
            point = g2_from_bytes(bytes.fromhex(secret["de"]), "decryption key")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SM9EncodingError):
                raise
            raise SM9EncodingError("malformed SM9 decryption key fields") from exc
        return cls(identity, point, mpk).checked()

    @classmethod
    def load(cls, path: str | Path, password: str | bytes) -> EncryptPrivateKey:
        public, secret = read_secret_file(path, KIND_ENC_USER, password)
        try:
            return cls.from_file_fields(public, secret)
        except SM9EncodingError as exc:
            raise SM9EncodingError(f"{path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"EncryptPrivateKey(identity={self.identity!r}, secret=<hidden>)"


def extract_encrypt_key(master: EncryptMasterKey, identity: str | bytes) -> EncryptPrivateKey:
    """The KGC's key extraction: de = [ke / (H1(ID||hid) + ke)]P2 (t1 = 0: the standard wants a new ke)."""
    ke = master.secret_scalar()
    t1 = (identity_hash(identity) + ke) % N
    if t1 == 0:
        raise SM9KeyError("t1 = 0 for this identity: the standard requires generating a new master key")
    t2 = int(ke * fp_inv_mod_n(t1) % N)
    return EncryptPrivateKey(identity, p2_mul(t2), master.public_key)


def g1_point_from_bytes(data: bytes, what: str) -> G1Point:
    """A G1 point from 65 bytes (04 || x || y) or the standard's 64 (x || y)."""
    if len(data) == 64:
        data = b"\x04" + data
    return g1_from_bytes(data, what)


__all__ = [
    "HID_ENC",
    "EncryptMasterKey",
    "EncryptMasterPublicKey",
    "EncryptPrivateKey",
    "extract_encrypt_key",
    "g1_point_from_bytes",
    "identity_hash",
]
