"""Aggregation: check every partial, name the cheaters, and combine into a standard SM9 signature.

S = sum S_j = R - [h]d_c, and (h, S) verifies as a plain SM9 signature. The coordinator checks all
partials in one batch (random linear combination: one pairing), and only if that fails checks them one
by one to name the cheaters.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence

import gmpy2

from fedledger.sm9.curve import G1Point, g1_add, g1_multi_mul, g1_neg
from fedledger.sm9.errors import SM9CheatingSignersError, SM9ThresholdError
from fedledger.sm9.fields import Fp12, N, fp12_is_one, fp12_mul
from fedledger.sm9.gt import gt_multi_pow
from fedledger.sm9.pairing import final_exponentiation, miller_loop
from fedledger.sm9.signature import Signature
from fedledger.sm9.threshold.binding import session_values
from fedledger.sm9.threshold.keys import KeyShare, ThresholdPublic, lagrange_at_zero
from fedledger.sm9.threshold.round1 import Commitment, check_session_id, new_session_id
from fedledger.sm9.threshold.round2 import PartialSignature, Signer


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
    values = session_values(public, session_id, bytes(message), commitments)
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
        check_session_id(self.session_id)
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
