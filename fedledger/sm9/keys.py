"""The SM9 key generation centre (KGC): the signing master key pair and user key extraction.

The master public key caches what every signature under it needs again: g = e(P1, Ppub) with a
fixed-base table for g^r, and per identity the point Q = [H1(ID||hid)]P2 + Ppub with its Miller-loop
lines. Secret values never appear in reprs or error messages.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gmpy2
from gmpy2 import mpz

from fedledger.fileio import atomic_write_text
from fedledger.sm9.curve import P1, G1Point, G2Point, g2_add, p1_mul, p2_mul
from fedledger.sm9.encoding import (
    PEM_LABEL_SIGN_MASTER_PUBLIC,
    g1_from_bytes,
    g1_to_bytes,
    master_public_key_from_der,
    master_public_key_to_der,
    pem_decode,
    pem_encode,
)
from fedledger.sm9.errors import SM9EncodingError, SM9KeyError
from fedledger.sm9.fields import Fp12, N
from fedledger.sm9.gt import GTFixedBase
from fedledger.sm9.hashing import HID_SIGN, h1, identity_bytes
from fedledger.sm9.keystore import read_secret_file, write_secret_file
from fedledger.sm9.pairing import G2Lines, pairing

KIND_MASTER = "sm9-sign-master-key"
KIND_USER = "sm9-sign-private-key"
_IDENTITY_CACHE = 256
_CACHE_LOCK = threading.Lock()  # the caches may be shared by a web server's worker threads


def random_scalar() -> int:
    """Uniform in [1, N-1] from the OS CSPRNG."""
    return secrets.randbelow(int(N) - 1) + 1


class SignMasterPublicKey:
    """Ppub-s = [ks]P2, with the pairing values every sign/verify under it reuses."""

    __slots__ = ("_g", "_g_table", "_identities", "point")

    def __init__(self, point: G2Point) -> None:
        if point is None:
            raise SM9EncodingError("the master public key cannot be the point at infinity")
        self.point = point
        self._g: Fp12 | None = None
        self._g_table: GTFixedBase | None = None
        self._identities: OrderedDict[bytes, tuple[G2Point, G2Lines]] = OrderedDict()

    # -- encodings
    def to_der(self) -> bytes:
        return master_public_key_to_der(self.point)

    @classmethod
    def from_der(cls, data: bytes) -> SignMasterPublicKey:
        return cls(master_public_key_from_der(data))

    def to_pem(self) -> str:
        return pem_encode(PEM_LABEL_SIGN_MASTER_PUBLIC, self.to_der())

    @classmethod
    def from_pem(cls, text: str | bytes) -> SignMasterPublicKey:
        return cls.from_der(pem_decode(PEM_LABEL_SIGN_MASTER_PUBLIC, text))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_pem())

    @classmethod
    def load(cls, path: str | Path) -> SignMasterPublicKey:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise SM9EncodingError(f"{path}: cannot read master public key ({exc.strerror})") from exc
        try:
            return cls.from_pem(text)
        except SM9EncodingError as exc:
            raise SM9EncodingError(f"{path}: {exc}") from exc

    # -- cached pairing data
    @property
    def g(self) -> Fp12:
        """g = e(P1, Ppub-s)."""
        if self._g is None:
            self._g = pairing(P1, self.point)
        return self._g

    def g_pow(self, e: int) -> Fp12:
        """g^e from a fixed-base table built on first use."""
        if self._g_table is None:
            self._g_table = GTFixedBase(self.g)
        return self._g_table.pow(e)

    def identity_point(self, identity: str | bytes) -> tuple[G2Point, G2Lines]:
        """Q = [H1(ID||hid, N)]P2 + Ppub-s and its Miller-loop lines (LRU-cached per identity)."""
        ident = identity_bytes(identity)
        with _CACHE_LOCK:
            cached = self._identities.get(ident)
            if cached is not None:
                self._identities.move_to_end(ident)
                return cached
        q = g2_add(p2_mul(h1(ident + HID_SIGN)), self.point)
        if q is None:  # only if H1(ID) = -ks: then t1 = 0 and no key exists for ID
            raise SM9KeyError("identity hashes to -ks; the standard requires a new master key")
        entry = (q, G2Lines(q))
        with _CACHE_LOCK:
            self._identities[ident] = entry
            if len(self._identities) > _IDENTITY_CACHE:
                self._identities.popitem(last=False)
        return entry

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SignMasterPublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.to_der())

    def __repr__(self) -> str:
        return f"SignMasterPublicKey({self.to_der()[7:23].hex()}...)"


class SignMasterKey:
    """The KGC's signing master secret ks in [1, N-1] and its public key."""

    __slots__ = ("_ks", "public_key")

    def __init__(self, ks: int) -> None:
        ks = int(ks)
        if not 1 <= ks < N:
            raise SM9KeyError("master secret out of range [1, N-1]")
        self._ks = mpz(ks)
        self.public_key = SignMasterPublicKey(p2_mul(ks))

    @classmethod
    def generate(cls) -> SignMasterKey:
        return cls(random_scalar())

    def secret_scalar(self) -> int:
        """ks itself; only for key extraction and the encrypted file."""
        return int(self._ks)

    def save(self, path: str | Path, password: str | bytes) -> None:
        write_secret_file(
            path,
            KIND_MASTER,
            {"master_public_key": self.public_key.to_der().hex()},
            {"ks": f"{int(self._ks):064x}"},
            password,
        )

    @classmethod
    def load(cls, path: str | Path, password: str | bytes) -> SignMasterKey:
        public, secret = read_secret_file(path, KIND_MASTER, password)
        try:
            key = cls(int(secret["ks"], 16))
        except (KeyError, TypeError, ValueError) as exc:
            raise SM9EncodingError(f"{path}: malformed master key payload") from exc
        if key.public_key.to_der().hex() != public.get("master_public_key"):
            raise SM9EncodingError(f"{path}: master public key in the header does not match the secret")
        return key

    def __repr__(self) -> str:
        return f"SignMasterKey(public_key={self.public_key!r}, secret=<hidden>)"


class SignPrivateKey:
    """A user's signing key dsA = [t2]P1 for one identity, with the master public key it belongs to."""

    __slots__ = ("_point", "identity", "master_public_key")

    def __init__(self, identity: str | bytes, point: G1Point, master_public_key: SignMasterPublicKey) -> None:
        if point is None:
            raise SM9KeyError("a signing key cannot be the point at infinity")
        self.identity = identity_bytes(identity)
        self._point = point
        self.master_public_key = master_public_key

    @property
    def point(self) -> G1Point:
        return self._point

    def save(self, path: str | Path, password: str | bytes) -> None:
        write_secret_file(
            path,
            KIND_USER,
            {"identity": self.identity.hex(), "master_public_key": self.master_public_key.to_der().hex()},
            {"d": g1_to_bytes(self._point).hex()},
            password,
        )

    @classmethod
    def load(cls, path: str | Path, password: str | bytes) -> SignPrivateKey:
        public, secret = read_secret_file(path, KIND_USER, password)
        try:
            identity = bytes.fromhex(public["identity"])
            mpk = SignMasterPublicKey.from_der(bytes.fromhex(public["master_public_key"]))
            point = g1_from_bytes(bytes.fromhex(secret["d"]), "signing key")
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SM9EncodingError):
                raise SM9EncodingError(f"{path}: {exc}") from exc
            raise SM9EncodingError(f"{path}: malformed signing key file") from exc
        return cls(identity, point, mpk)

    def __repr__(self) -> str:
        return f"SignPrivateKey(identity={self.identity!r}, secret=<hidden>)"


def user_key_scalar(master: SignMasterKey, identity: str | bytes) -> int:
    """t2 = ks / (H1(ID||hid) + ks) mod N. t1 = 0 means (per the standard) the master key must be replaced."""
    ks = master.secret_scalar()
    t1 = (h1(identity_bytes(identity) + HID_SIGN) + ks) % N
    if t1 == 0:
        raise SM9KeyError("t1 = 0 for this identity: the standard requires generating a new master key")
    return int(ks * fp_inv_mod_n(t1) % N)


def fp_inv_mod_n(a: Any) -> Any:
    """Inverse modulo the group order N."""
    return gmpy2.invert(a, N)


def extract_sign_key(master: SignMasterKey, identity: str | bytes) -> SignPrivateKey:
    """The KGC's user key extraction: dsA = [t2]P1."""
    return SignPrivateKey(identity, p1_mul(user_key_scalar(master, identity)), master.public_key)


__all__ = [
    "SignMasterKey",
    "SignMasterPublicKey",
    "SignPrivateKey",
    "extract_sign_key",
    "random_scalar",
    "user_key_scalar",
]
