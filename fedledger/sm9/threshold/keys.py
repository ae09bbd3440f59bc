"""The dealer's side: Shamir point shares of the consortium key and the public data that checks them.

d_c = [t2]P1 is split into POINT shares d_j = [f(j)]P1 with f(0) = t2 (scalar shares would let k
colluders recover t2 and then ks). Public per-share data Y_j = e(d_j, Q) lets anyone check a partial.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmpy2

from fedledger.fileio import atomic_write_text
from fedledger.sm9.curve import G1Point, p1_mul
from fedledger.sm9.encoding import g1_from_bytes, g1_to_bytes, hex_field, int_field, json_object, str_field
from fedledger.sm9.errors import SM9EncodingError, SM9KeyError, SM9ThresholdError
from fedledger.sm9.fields import Fp12, N, fp12_from_bytes, fp12_to_bytes
from fedledger.sm9.gt import gt_multi_pow
from fedledger.sm9.hashing import identity_bytes
from fedledger.sm9.keys import SignMasterKey, SignMasterPublicKey, random_scalar, user_key_scalar
from fedledger.sm9.keystore import read_secret_file, write_secret_file

KIND_SHARE = "sm9-threshold-key-share"
MAX_SHARES = 255


def lagrange_at_zero(index: int, indices: Iterable[int]) -> int:
    """lambda_index for interpolation at 0 over ``indices`` (mod N)."""
    num, den = 1, 1
    for other in indices:
        if other != index:
            num = num * other % N
            den = den * (other - index) % N
    return int(num * gmpy2.invert(den, N) % N)


@dataclass(frozen=True)
class ThresholdPublic:
    """What everyone may know about a k-of-n split: identity, k, n, master public key, Y_j = e(d_j, Q)."""

    identity: bytes
    k: int
    n: int
    master_public_key: SignMasterPublicKey
    verification: dict[int, Fp12]

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n <= MAX_SHARES:
            raise SM9ThresholdError(f"need 1 <= k <= n <= {MAX_SHARES}, got k={self.k}, n={self.n}")
        if sorted(self.verification) != list(range(1, self.n + 1)):
            raise SM9ThresholdError("verification data must hold Y_j for exactly the shares 1..n")

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": "fedledger-sm9-threshold-v1",
            "identity": self.identity.hex(),
            "identity_text": self.identity.decode("utf-8", errors="replace"),
            "k": self.k,
            "n": self.n,
            "master_public_key": self.master_public_key.to_pem(),
            "verification": {str(j): fp12_to_bytes(y).hex() for j, y in sorted(self.verification.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThresholdPublic:
        what = "threshold public data"
        if data.get("scheme") != "fedledger-sm9-threshold-v1":
            raise SM9EncodingError(f"{what}: unknown scheme {data.get('scheme')!r}")
        identity = hex_field(data, "identity", what)
        k, n = int_field(data, "k", what), int_field(data, "n", what)
        mpk = SignMasterPublicKey.from_pem(str_field(data, "master_public_key", what))
        raw = data.get("verification")
        if not isinstance(raw, dict):
            raise SM9EncodingError(f"{what}: 'verification' must be an object")
        verification: dict[int, Fp12] = {}
        for key, value in raw.items():
            if not (isinstance(key, str) and key.isdigit() and isinstance(value, str)):
                raise SM9EncodingError(f"{what}: malformed verification entry {key!r}")
            try:
                verification[int(key)] = fp12_from_bytes(bytes.fromhex(value))
            except ValueError as exc:
                raise SM9EncodingError(f"{what}: Y_{key}: {exc}") from exc
        try:
            return cls(identity, k, n, mpk, verification)
        except SM9ThresholdError as exc:
            raise SM9EncodingError(f"{what}: {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> ThresholdPublic:
        return cls.from_dict(json_object(text, "threshold public data"))

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> ThresholdPublic:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SM9EncodingError(f"{path}: cannot read threshold public data") from exc
        try:
            return cls.from_json(text)
        except SM9EncodingError as exc:
            raise SM9EncodingError(f"{path}: {exc}") from exc

    def validate(self) -> None:
        """Check the Y_j are consistent: they interpolate (in the exponent) to g = e(d_c, Q), degree k-1.

        Catches a dealer that published verification data not matching one degree-(k-1) polynomial.
        """
        first = list(range(1, self.k + 1))
        at_zero = gt_multi_pow([(self.verification[i], lagrange_at_zero(i, first)) for i in first])
        if at_zero != self.master_public_key.g:
            raise SM9ThresholdError("verification data does not interpolate to e(d_c, Q) = g")
        for j in range(self.k + 1, self.n + 1):
            weights = [(self.verification[i], _lagrange_at(i, first, j)) for i in first]
            if gt_multi_pow(weights) != self.verification[j]:
                raise SM9ThresholdError(f"verification data for share {j} is inconsistent with shares 1..k")


def _lagrange_at(index: int, indices: Sequence[int], x: int) -> int:
    num, den = 1, 1
    for other in indices:
        if other != index:
            num = num * (x - other) % N
            den = den * (index - other) % N
    return int(num * gmpy2.invert(den, N) % N)


class KeyShare:
    """One institution's point share d_j = [f(j)]P1 of the consortium key."""

    __slots__ = ("_point", "identity", "index", "k", "master_public_key", "n")

    def __init__(
        self,
        index: int,
        point: G1Point,
        identity: bytes,
        k: int,
        n: int,
        master_public_key: SignMasterPublicKey,
    ) -> None:
        if not 1 <= index <= n or point is None:
            raise SM9KeyError(f"invalid key share (index {index} of {n})")
        self.index, self._point, self.identity = index, point, identity
        self.k, self.n, self.master_public_key = k, n, master_public_key

    @property
    def point(self) -> G1Point:
        return self._point

    def save(self, path: str | Path, password: str | bytes) -> None:
        public = {
            "identity": self.identity.hex(),
            "index": self.index,
            "k": self.k,
            "n": self.n,
            "master_public_key": self.master_public_key.to_der().hex(),
        }
        write_secret_file(path, KIND_SHARE, public, {"d": g1_to_bytes(self._point).hex()}, password)

    @classmethod
    def load(cls, path: str | Path, password: str | bytes) -> KeyShare:
        public, secret = read_secret_file(path, KIND_SHARE, password)
        try:
            return cls(
                int(public["index"]),
                g1_from_bytes(bytes.fromhex(secret["d"]), "key share"),
                bytes.fromhex(public["identity"]),
                int(public["k"]),
                int(public["n"]),
                SignMasterPublicKey.from_der(bytes.fromhex(public["master_public_key"])),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SM9EncodingError(f"{path}: malformed key share file ({exc.__class__.__name__})") from exc

    def __repr__(self) -> str:
        return (
            f"KeyShare(index={self.index}, k={self.k}, n={self.n}, identity={self.identity!r}, "
            "secret=<hidden>)"
        )


def split_key(
    master: SignMasterKey, identity: str | bytes, k: int, n: int
) -> tuple[list[KeyShare], ThresholdPublic]:
    """The dealer (KGC): Shamir-split the identity's key into point shares, with Y_j = e(d_j, Q).

    Y_j = g^(f(j)/t2) because e([s]P1, Q) = g^(s/t2); the dealer knows f, so no pairing is needed.
    """
    if not 1 <= k <= n <= MAX_SHARES:
        raise SM9ThresholdError(f"need 1 <= k <= n <= {MAX_SHARES}, got k={k}, n={n}")
    ident = identity_bytes(identity)
    t2 = user_key_scalar(master, ident)
    coefficients = [t2] + [random_scalar() for _ in range(k - 1)]
    t2_inv = int(gmpy2.invert(t2, N))
    mpk = master.public_key
    shares: list[KeyShare] = []
    verification: dict[int, Fp12] = {}
    for j in range(1, n + 1):
        f_j = 0
        for c in reversed(coefficients):
            f_j = (f_j * j + c) % N
        shares.append(KeyShare(j, p1_mul(f_j), ident, k, n, mpk))
        verification[j] = mpk.g_pow(f_j * t2_inv % N)
    return shares, ThresholdPublic(ident, k, n, mpk, verification)
