"""k-of-n threshold SM9 whose output is an ordinary SM9 signature (see DESIGN.md, "Threshold SM9").

Dealer: d_c = [t2]P1 is split into POINT shares d_j = [f(j)]P1 with f(0) = t2 (scalar shares would let
k colluders recover t2 and then ks). Public per-share data Y_j = e(d_j, Q) lets anyone check a partial.

Signing (two rounds, FROST-style binding, RFC 9591):
  1. each signer j commits D_j = [a_j]P1, E_j = [b_j]P1 for a session id;
  2. rho_j = hash(session, ID, M, all commitments, j); R = sum (D_j + [rho_j]E_j); w = e(R, Q);
     h = H2(M || w); each signer sends S_j = [a_j + rho_j b_j]P1 - [h lambda_j]d_j.
S = sum S_j = R - [h]d_c, and (h, S) verifies as a plain SM9 signature. The coordinator checks all
partials in one batch (random linear combination: one pairing), and only if that fails checks them one
by one to name the cheaters. Nonces live in memory only and are deleted before use, so a nonce can
never sign twice, even across restarts.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gmpy2

from fedledger.digests import sm3
from fedledger.fileio import atomic_write_text
from fedledger.sm9.curve import G1Point, g1_add, g1_mul, g1_multi_mul, g1_neg, p1_mul
from fedledger.sm9.encoding import g1_from_bytes, g1_to_bytes
from fedledger.sm9.errors import (
    SM9CheatingSignersError,
    SM9EncodingError,
    SM9KeyError,
    SM9ThresholdError,
)
from fedledger.sm9.fields import Fp12, N, fp12_from_bytes, fp12_is_one, fp12_mul, fp12_to_bytes
from fedledger.sm9.gt import gt_multi_pow
from fedledger.sm9.hashing import h2, hash_to_scalar, identity_bytes
from fedledger.sm9.keys import SignMasterKey, SignMasterPublicKey, random_scalar, user_key_scalar
from fedledger.sm9.keystore import read_secret_file, write_secret_file
from fedledger.sm9.pairing import final_exponentiation, miller_loop
from fedledger.sm9.signature import Signature

KIND_SHARE = "sm9-threshold-key-share"
MAX_SHARES = 255
_RHO_TAG = b"fedledger/sm9/threshold/binding-factor/v1"
_MAX_SESSION_ID = 256


# ---------------------------------------------------------------- helpers


def _check_session_id(session_id: str) -> bytes:
    if not isinstance(session_id, str) or not 0 < len(session_id) <= _MAX_SESSION_ID:
        raise SM9ThresholdError(
            f"session id must be a non-empty string of at most {_MAX_SESSION_ID} characters"
        )
    return session_id.encode("utf-8")


def new_session_id() -> str:
    return secrets.token_hex(16)


def lagrange_at_zero(index: int, indices: Iterable[int]) -> int:
    """lambda_index for interpolation at 0 over ``indices`` (mod N)."""
    num, den = 1, 1
    for other in indices:
        if other != index:
            num = num * other % N
            den = den * (other - index) % N
    return int(num * gmpy2.invert(den, N) % N)


def _hex_field(data: dict[str, Any], name: str, what: str) -> bytes:
    value = data.get(name)
    if not isinstance(value, str):
        raise SM9EncodingError(f"{what}: field '{name}' must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise SM9EncodingError(f"{what}: field '{name}' is not valid hex") from exc


def _int_field(data: dict[str, Any], name: str, what: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SM9EncodingError(f"{what}: field '{name}' must be an integer")
    return value


def _str_field(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise SM9EncodingError(f"{what}: field '{name}' must be a string")
    return value


def _loads(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SM9EncodingError(f"{what}: not valid JSON") from exc
    if not isinstance(data, dict):
        raise SM9EncodingError(f"{what}: expected a JSON object")
    return data


# ---------------------------------------------------------------- public data and shares


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
        identity = _hex_field(data, "identity", what)
        k, n = _int_field(data, "k", what), _int_field(data, "n", what)
        mpk = SignMasterPublicKey.from_pem(_str_field(data, "master_public_key", what))
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
        return cls.from_dict(_loads(text, "threshold public data"))

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


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class Commitment:
    """Round 1: signer ``index`` commits D = [a]P1, E = [b]P1 for ``session_id``."""

    index: int
    session_id: str
    D: G1Point
    E: G1Point

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "session_id": self.session_id,
            "D": g1_to_bytes(self.D).hex(),
            "E": g1_to_bytes(self.E).hex(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Commitment:
        what = "threshold commitment"
        index = _int_field(data, "index", what)
        session_id = _str_field(data, "session_id", what)
        d_point = g1_from_bytes(_hex_field(data, "D", what), f"{what} D (share {index})")
        e_point = g1_from_bytes(_hex_field(data, "E", what), f"{what} E (share {index})")
        return cls(index, session_id, d_point, e_point)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Commitment:
        return cls.from_dict(_loads(text, "threshold commitment"))


@dataclass(frozen=True)
class PartialSignature:
    """Round 2: signer ``index``'s S_j for ``session_id``."""

    index: int
    session_id: str
    S: G1Point

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "session_id": self.session_id, "S": g1_to_bytes(self.S).hex()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartialSignature:
        what = "partial signature"
        index = _int_field(data, "index", what)
        return cls(
            index,
            _str_field(data, "session_id", what),
            g1_from_bytes(_hex_field(data, "S", what), f"{what} S (share {index})"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PartialSignature:
        return cls.from_dict(_loads(text, "partial signature"))


# ---------------------------------------------------------------- the session values both sides derive


@dataclass(frozen=True)
class _SessionValues:
    indices: tuple[int, ...]
    rho: dict[int, int]
    commitments: dict[int, Commitment]
    h: int

    def r_point(self, j: int) -> G1Point:
        """R_j = D_j + [rho_j]E_j (only needed to single out a cheater)."""
        c = self.commitments[j]
        return g1_add(c.D, g1_mul(c.E, self.rho[j]))


_SESSION_CACHE: OrderedDict[bytes, _SessionValues] = OrderedDict()
_SESSION_CACHE_SIZE = 64
_SESSION_LOCK = threading.Lock()


def _normalise_commitments(
    public: ThresholdPublic, session_id: str, commitments: Sequence[Commitment]
) -> list[Commitment]:
    _check_session_id(session_id)
    ordered = sorted(commitments, key=lambda c: c.index)
    indices = [c.index for c in ordered]
    if len(set(indices)) != len(indices):
        raise SM9ThresholdError(f"duplicate signer indices in commitments: {indices}")
    bad = [i for i in indices if not 1 <= i <= public.n]
    if bad:
        raise SM9ThresholdError(f"commitments from unknown share indices {bad} (valid: 1..{public.n})")
    if len(ordered) < public.k:
        raise SM9ThresholdError(f"{len(ordered)} signer(s) committed, at least k={public.k} are required")
    wrong = [c.index for c in ordered if c.session_id != session_id]
    if wrong:
        raise SM9ThresholdError(f"commitments from shares {wrong} belong to another session")
    for c in ordered:
        if c.D is None or c.E is None:
            raise SM9ThresholdError(f"commitment from share {c.index} holds the point at infinity")
    return ordered


def _session_values(
    public: ThresholdPublic, session_id: str, message: bytes, commitments: Sequence[Commitment]
) -> _SessionValues:
    """rho_j, R_j and h: public functions of the session, computed once per process (cached)."""
    ordered = _normalise_commitments(public, session_id, commitments)
    encoded = b"".join(c.index.to_bytes(2, "big") + g1_to_bytes(c.D) + g1_to_bytes(c.E) for c in ordered)
    sid = session_id.encode("utf-8")
    transcript = b"".join(
        len(part).to_bytes(8, "big") + part
        for part in (sid, public.identity, public.master_public_key.to_der(), sm3(message), encoded)
    )
    cache_key = sm3(transcript)
    with _SESSION_LOCK:
        cached = _SESSION_CACHE.get(cache_key)
    if cached is not None:
        return cached
    rho = {c.index: hash_to_scalar(_RHO_TAG, transcript + c.index.to_bytes(2, "big")) for c in ordered}
    r_total = g1_multi_mul([(c.D, 1) for c in ordered] + [(c.E, rho[c.index]) for c in ordered])
    if r_total is None:
        raise SM9ThresholdError("the joint nonce R is the point at infinity; start a new session")
    _, lines = public.master_public_key.identity_point(public.identity)
    w = final_exponentiation(miller_loop(r_total, lines))
    values = _SessionValues(
        tuple(c.index for c in ordered), rho, {c.index: c for c in ordered}, h2(message + fp12_to_bytes(w))
    )
    with _SESSION_LOCK:
        _SESSION_CACHE[cache_key] = values
        if len(_SESSION_CACHE) > _SESSION_CACHE_SIZE:
            _SESSION_CACHE.popitem(last=False)
    return values


# ---------------------------------------------------------------- signer


class Signer:
    """One institution's side of the protocol, holding its key share and its one-time nonces."""

    def __init__(self, share: KeyShare, public: ThresholdPublic) -> None:
        if share.identity != public.identity or share.master_public_key != public.master_public_key:
            raise SM9ThresholdError(f"key share {share.index} belongs to another identity or master key")
        if (share.k, share.n) != (public.k, public.n):
            raise SM9ThresholdError(f"key share {share.index} is from a different split (k, n)")
        self.share = share
        self.public = public
        self._nonces: dict[str, tuple[int, int, Commitment]] = {}
        self._used: set[str] = set()

    @property
    def index(self) -> int:
        return self.share.index

    def commit(self, session_id: str) -> Commitment:
        """Round 1: fresh nonces for ``session_id`` (refused if the session was already used here)."""
        _check_session_id(session_id)
        if session_id in self._used or session_id in self._nonces:
            raise SM9ThresholdError(f"share {self.index} already committed in session {session_id!r}")
        a, b = random_scalar(), random_scalar()
        commitment = Commitment(self.index, session_id, p1_mul(a), p1_mul(b))
        self._nonces[session_id] = (a, b, commitment)
        return commitment

    def sign(self, session_id: str, message: bytes, commitments: Sequence[Commitment]) -> PartialSignature:
        """Round 2: the partial signature. The nonces are deleted first, so they can never sign twice."""
        entry = self._nonces.pop(session_id, None)
        if entry is None:
            if session_id in self._used:
                raise SM9ThresholdError(f"share {self.index} already signed in session {session_id!r}")
            raise SM9ThresholdError(f"share {self.index} has no commitment in session {session_id!r}")
        self._used.add(session_id)
        a, b, mine = entry
        if not isinstance(message, bytes | bytearray):
            raise SM9ThresholdError("message must be bytes")
        theirs = [c for c in commitments if c.index == self.index]
        if theirs != [mine]:
            raise SM9ThresholdError(f"the commitment list does not carry share {self.index}'s own commitment")
        values = _session_values(self.public, session_id, bytes(message), commitments)
        lam = lagrange_at_zero(self.index, values.indices)
        nonce = (a + values.rho[self.index] * b) % N
        s_j = g1_add(p1_mul(nonce), g1_mul(self.share.point, (-values.h * lam) % N))
        if s_j is None:
            raise SM9ThresholdError("partial signature is the point at infinity; start a new session")
        return PartialSignature(self.index, session_id, s_j)

    def __repr__(self) -> str:
        return f"Signer(index={self.index}, pending_sessions={len(self._nonces)})"


# ---------------------------------------------------------------- coordinator


def _pair_is_one(point: G1Point, public: ThresholdPublic, gt_factors: list[tuple[Fp12, int]]) -> bool:
    """e(point, Q) * prod Y^e == 1."""
    product = gt_multi_pow(gt_factors)
    if point is not None:
        _, lines = public.master_public_key.identity_point(public.identity)
        product = fp12_mul(product, final_exponentiation(miller_loop(point, lines)))
    return fp12_is_one(product)


def aggregate(
    public: ThresholdPublic,
    session_id: str,
    message: bytes,
    commitments: Sequence[Commitment],
    partials: Sequence[PartialSignature],
) -> Signature:
    """Check every partial and combine them into a standard SM9 signature (h, S).

    Raises ``SM9CheatingSignersError`` naming the shares whose partials fail
    e(S_j, Q) = e(R_j, Q) * Y_j^(-h lambda_j); the caller can run a new session without them.
    """
    values = _session_values(public, session_id, bytes(message), commitments)
    by_index: dict[int, PartialSignature] = {}
    for partial in partials:
        if partial.session_id != session_id:
            raise SM9ThresholdError(f"partial from share {partial.index} belongs to another session")
        if partial.index in by_index:
            raise SM9ThresholdError(f"two partial signatures from share {partial.index}")
        by_index[partial.index] = partial
    missing = sorted(set(values.indices) - set(by_index))
    extra = sorted(set(by_index) - set(values.indices))
    if missing or extra:
        raise SM9ThresholdError(f"partials missing from shares {missing}, unexpected from shares {extra}")
    h = values.h
    # Per signer: e(S_j - R_j, Q) * Y_j^(h lambda_j) = 1. Batch with random 128-bit exponents e_j:
    # X = sum [e_j / (h lambda_j)](S_j - R_j) must satisfy e(X, Q) * prod Y_j^(e_j) = 1.
    # X is one multi-scalar product over S_j, D_j and E_j (R_j = D_j + [rho_j]E_j).
    scale: dict[int, int] = {}
    terms: list[tuple[G1Point, int]] = []
    exps = {j: secrets.randbits(128) | 1 for j in values.indices}
    for j in values.indices:
        if by_index[j].S is None:
            raise SM9CheatingSignersError([j])
        scale[j] = h * lagrange_at_zero(j, values.indices) % N
        c_j = int(exps[j] * gmpy2.invert(scale[j], N) % N)
        commitment = values.commitments[j]
        terms += [(by_index[j].S, c_j), (commitment.D, -c_j), (commitment.E, -c_j * values.rho[j])]
    combined = g1_multi_mul(terms)
    if not _pair_is_one(combined, public, [(public.verification[j], exps[j]) for j in values.indices]):
        cheaters = [
            j
            for j in values.indices
            if not _pair_is_one(
                g1_add(by_index[j].S, g1_neg(values.r_point(j))), public, [(public.verification[j], scale[j])]
            )
        ]
        raise SM9CheatingSignersError(cheaters or list(values.indices))
    s_total: G1Point = None
    for j in values.indices:
        s_total = g1_add(s_total, by_index[j].S)
    if s_total is None:
        raise SM9ThresholdError("aggregate S is the point at infinity; start a new session")
    return Signature(h, s_total)


class Coordinator:
    """Runs one signing session: collects commitments, then partials, and aggregates.

    A failed session is not resumed: nonces are single-use, so ``retry_without`` starts a new session
    (new id) over the remaining signers.
    """

    def __init__(
        self,
        public: ThresholdPublic,
        message: bytes,
        session_id: str | None = None,
        excluded: Iterable[int] = (),
    ) -> None:
        self.public = public
        self.message = bytes(message)
        self.session_id = session_id or new_session_id()
        _check_session_id(self.session_id)
        self.excluded = frozenset(excluded)
        self._commitments: dict[int, Commitment] = {}

    def add_commitment(self, commitment: Commitment) -> None:
        if commitment.session_id != self.session_id:
            raise SM9ThresholdError(f"commitment from share {commitment.index} is for another session")
        if commitment.index in self.excluded:
            raise SM9ThresholdError(f"share {commitment.index} is excluded from this session")
        if not 1 <= commitment.index <= self.public.n:
            raise SM9ThresholdError(f"unknown share index {commitment.index}")
        if commitment.index in self._commitments:
            raise SM9ThresholdError(f"share {commitment.index} already committed in this session")
        self._commitments[commitment.index] = commitment

    @property
    def commitments(self) -> list[Commitment]:
        """The commitment list every signer receives for round 2 (sorted by index)."""
        if len(self._commitments) < self.public.k:
            raise SM9ThresholdError(
                f"only {len(self._commitments)} signer(s) committed, at least k={self.public.k} are required"
            )
        return [self._commitments[j] for j in sorted(self._commitments)]

    def aggregate(self, partials: Sequence[PartialSignature]) -> Signature:
        return aggregate(self.public, self.session_id, self.message, self.commitments, partials)

    def retry_without(self, indices: Iterable[int]) -> Coordinator:
        """A fresh session for the same message, excluding ``indices`` (and those excluded before)."""
        return Coordinator(self.public, self.message, excluded=self.excluded | set(indices))


def threshold_sign_local(shares: Sequence[KeyShare], public: ThresholdPublic, message: bytes) -> Signature:
    """Both rounds for the given shares in one process (the CLI's local ceremony)."""
    signers = [Signer(share, public) for share in shares]
    if len({s.index for s in signers}) != len(signers):
        raise SM9ThresholdError("the same share was given twice")
    if len(signers) < public.k:
        raise SM9ThresholdError(f"{len(signers)} share(s) given, at least k={public.k} are required")
    coordinator = Coordinator(public, message)
    for signer in signers:
        coordinator.add_commitment(signer.commit(coordinator.session_id))
    commitments = coordinator.commitments
    partials = [signer.sign(coordinator.session_id, message, commitments) for signer in signers]
    return coordinator.aggregate(partials)
