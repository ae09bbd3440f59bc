"""The values both rounds derive from a session's commitments: binding factors rho_j, R and h.

rho_j = hash(session, ID, M, all commitments, j) (FROST-style binding, RFC 9591, so concurrent sessions are
safe); R = sum (D_j + [rho_j]E_j); w = e(R, Q); h = H2(M || w). Signers and the coordinator compute the
same values, so they are cached per process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.digests import sm3
from fedledger.sm9.curve import G1Point, g1_add, g1_mul, g1_multi_mul
from fedledger.sm9.encoding import g1_to_bytes
from fedledger.sm9.errors import SM9ThresholdError
from fedledger.sm9.fields import fp12_to_bytes
from fedledger.sm9.hashing import h2, hash_to_scalar
from fedledger.sm9.pairing import final_exponentiation, miller_loop
from fedledger.sm9.threshold.keys import ThresholdPublic
from fedledger.sm9.threshold.round1 import Commitment, check_session_id

_RHO_TAG = b"fedledger/sm9/threshold/binding-factor/v1"


@dataclass(frozen=True)
class SessionValues:
    """A session's signing set (sorted), binding factors rho_j, commitments by index and challenge h."""

    indices: tuple[int, ...]
    rho: dict[int, int]
    commitments: dict[int, Commitment]
    h: int

    def r_point(self, j: int) -> G1Point:
        """R_j = D_j + [rho_j]E_j (only needed to single out a cheater)."""
        c = self.commitments[j]
        return g1_add(c.D, g1_mul(c.E, self.rho[j]))


_SESSION_CACHE: OrderedDict[bytes, SessionValues] = OrderedDict()
_SESSION_CACHE_SIZE = 64
_SESSION_LOCK = threading.Lock()


def normalise_commitments(
    public: ThresholdPublic, session_id: str, commitments: Sequence[Commitment]
) -> list[Commitment]:
    check_session_id(session_id)
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


def session_values(
    public: ThresholdPublic, session_id: str, message: bytes, commitments: Sequence[Commitment]
) -> SessionValues:
    """rho_j, R_j and h: public functions of the session, computed once per process (cached)."""
    ordered = normalise_commitments(public, session_id, commitments)
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
    values = SessionValues(
        tuple(c.index for c in ordered), rho, {c.index: c for c in ordered}, h2(message + fp12_to_bytes(w))
    )
    with _SESSION_LOCK:
        _SESSION_CACHE[cache_key] = values
        if len(_SESSION_CACHE) > _SESSION_CACHE_SIZE:
            _SESSION_CACHE.popitem(last=False)
    return values
