"""Unmasking: the aggregate from the published messages alone (aggregator and every node).

Why one function for both: the aggregator computes the aggregate with ``recompute_aggregate``
and a co-signing node runs the same function on the same published bytes, so a wrong aggregate
is refused (``verify_aggregate``). Nothing secret is an input: the survivors' seeds and the
dropped members' mask keys are rebuilt from the revealed shares. A revealed share that does not
match its dealer's commitment names the revealer; committed shares that do not rebuild the
committed secret name the dealer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from fedledger.secagg.errors import CheatingMember, InsufficientShares, SecAggError, SecAggInputError
from fedledger.secagg.hybrid import SECRET_BYTES, HybridKeyPair, pair_secret
from fedledger.secagg.layout import EntryWeights, coverage_weights, entry_weights
from fedledger.secagg.masks import add_unmasked, apply_pair_mask
from fedledger.secagg.messages import Published, RoundSetup, secret_commitment, share_commitment, survivors_digest
from fedledger.secagg.ring import RingSpec, decode
from fedledger.secagg.shamir import combine

KEM_SECRET_BYTES = 32


class AggregateMismatch(SecAggError):
    """The aggregate a party claims differs from the one the published messages give."""


@dataclass
class Aggregate:
    """The unmasked ring sum S = sum_u w_u q_u (+ noise) and the public weight per global entry."""

    ring: RingSpec
    ring_sum: np.ndarray
    weights: EntryWeights
    survivors: list[int]
    dropped: list[int]
    cheaters: dict[int, str] = field(default_factory=dict)

    @functools.cached_property
    def coverage(self) -> np.ndarray:
        """The public weight W of every global entry (int64), made on first use (DP noise needs it)."""
        return self.weights.dense()

    def mean(self, previous: np.ndarray) -> np.ndarray:
        """The decoded aligned model (float32): S / (W * 2**f), ``previous`` where nobody covers."""
        return decode(self.ring_sum, self.weights, previous, self.ring)


def _honest_reveals(published: Published, u2: set[int], u3: set[int]) -> tuple[dict[int, dict], dict[int, str]]:
    """Reveals that obey the rules and match the commitments; the others name their sender."""
    rnd = published.setup.round_index
    digest = survivors_digest(rnd, sorted(u3))
    good, cheaters = {}, {}
    for m, reveal in sorted(published.reveals.items()):
        if m not in u3 or reveal.member != m or reveal.round_index != rnd:
            cheaters[m] = "reveal from a member outside the survivor set or for another round"
            continue
        if reveal.survivors_digest != digest:
            cheaters[m] = "reveal for another survivor set"
            continue
        if set(reveal.seed_shares) != u3 or set(reveal.key_shares) != u2 - u3:
            cheaters[m] = "reveal must hold seed shares of survivors and key shares of dropped members only"
            continue
        bad = [
            d
            for kind, shares in (("seed", reveal.seed_shares), ("key", reveal.key_shares))
            for d, share in shares.items()
            if getattr(published.shares[d], f"{kind}_share_commitments").get(m)
            != share_commitment(rnd, d, m, kind, share)
        ]
        if bad:
            cheaters[m] = f"revealed shares of member(s) {bad} contradict their dealers' commitments"
            continue
        good[m] = {"seed": reveal.seed_shares, "key": reveal.key_shares}
    return good, cheaters


def _rebuild(published: Published, good: dict[int, dict], dealer: int, kind: str) -> bytes:
    t = published.setup.threshold
    shares = {m: r[kind][dealer] for m, r in good.items()}
    if len(shares) < t:
        raise InsufficientShares(f"member {dealer}: {len(shares)} valid {kind} shares revealed, {t} needed")
    try:
        secret = combine(shares, t)
    except SecAggInputError as exc:  # every share matched its commitment: the dealer made them so
        raise CheatingMember(dealer, f"its committed {kind} shares are malformed ({exc})") from exc
    committed = getattr(published.shares[dealer], f"{kind}_commitment")
    if secret_commitment(published.setup.round_index, dealer, kind, secret) != committed:
        raise CheatingMember(dealer, f"its committed {kind} shares do not rebuild its committed secret")
    return secret


def _check_inputs(published: Published) -> tuple[set[int], set[int]]:
    setup = published.setup
    u2, u3 = set(published.shares), set(published.masked)
    if not u2 <= set(published.keys) or not u2 <= set(setup.weights):
        raise SecAggInputError("key shares from members outside the roster or without advertised keys")
    if not u3 <= u2:
        raise SecAggInputError(f"masked inputs from members {sorted(u3 - u2)} that did not share keys")
    if len(u3) < setup.threshold:
        raise InsufficientShares(f"only {len(u3)} members sent masked inputs, threshold is {setup.threshold}")
    for m, masked in published.masked.items():
        if masked.member != m or masked.round_index != setup.round_index:
            raise CheatingMember(m, "masked input for another member or round")
        if masked.values.dtype != np.dtype(setup.ring.dtype) or masked.values.shape != setup.positions[m].shape:
            raise CheatingMember(m, "masked input does not match its sub-model or the ring")
    return u2, u3


def recompute_aggregate(published: Published) -> Aggregate:
    """The unmasked aggregate of the published round; raises with a named reason when it cannot."""
    setup = published.setup
    ring, rnd, length = setup.ring, setup.round_index, setup.global_length
    u2, u3 = _check_inputs(published)
    good, cheaters = _honest_reveals(published, u2, u3)
    total = np.zeros(length, dtype=ring.dtype)
    weights = entry_weights(length, [(setup.positions[s], setup.runs[s], setup.weights[s]) for s in sorted(u3)])
    for s in sorted(u3):
        seed = _rebuild(published, good, s, "seed")
        masked = published.masked[s].values
        add_unmasked(total, masked, seed, rnd, s, setup.positions[s], setup.row_blocks[s], ring)
    for d in sorted(u2 - u3):
        material = _rebuild(published, good, d, "key")
        ciphertexts = published.shares[d].pair_ciphertexts
        if len(material) != SECRET_BYTES + KEM_SECRET_BYTES * len(ciphertexts):
            raise CheatingMember(d, "mask-key material of the wrong length")
        keys = HybridKeyPair(material[:SECRET_BYTES])
        if keys.public != published.keys[d].mask:
            raise CheatingMember(d, "mask-key material does not match its advertised mask key")
        kem_secrets = {
            j: material[SECRET_BYTES + KEM_SECRET_BYTES * k : SECRET_BYTES + KEM_SECRET_BYTES * (k + 1)]
            for k, j in enumerate(sorted(ciphertexts))
        }
        for s in sorted(u3):
            peer = published.keys[s].mask
            if (d < s and s not in ciphertexts) or (d > s and d not in published.shares[s].pair_ciphertexts):
                raise CheatingMember(min(d, s), f"no pair ciphertext for the pair ({min(d, s)}, {max(d, s)})")
            if d < s:
                ct, kem_secret = ciphertexts[s], kem_secrets[s]
                secret = pair_secret(keys.dh(peer), kem_secret, ct, keys.public, peer, (d, s), rnd)
            else:
                ct = published.shares[s].pair_ciphertexts[d]
                secret = pair_secret(keys.dh(peer), keys.decapsulate(ct), ct, peer, keys.public, (s, d), rnd)
            # survivor s added +P if s < d, -P otherwise: take it out again
            own, other = (setup.positions[s], setup.runs[s]), (setup.positions[d], setup.runs[d])
            apply_pair_mask(total, secret, rnd, ring, -1 if s < d else +1, own, other, length, by_global=True)
    return Aggregate(ring, total, weights, sorted(u3), sorted(u2 - u3), cheaters)


def sole_coverage(setup: RoundSetup, members: list[int] | None = None) -> dict[int, int]:
    """Per member, how many of its entries no other member covers.

    Why: the aggregate of an entry covered by one member is that member's value; masks cannot
    hide what the output itself says. With mixed widths (a lone full-width member) this is the
    usual case, so a round should either choose selections that cover every entry twice or add
    DP noise; the aggregator can show this figure before the round opens.
    """
    chosen = sorted(members or setup.members)
    counts = coverage_weights(setup.global_length, [(setup.positions[m], setup.runs[m], 1) for m in chosen])
    return {m: int(np.count_nonzero(counts[setup.positions[m]] == 1)) for m in chosen}


def verify_aggregate(published: Published, claimed: np.ndarray) -> Aggregate:
    """A node's check: the claimed ring sum must equal the recomputed one, entry for entry."""
    recomputed = recompute_aggregate(published)
    if claimed.shape != recomputed.ring_sum.shape or not np.array_equal(claimed, recomputed.ring_sum):
        raise AggregateMismatch("the claimed aggregate differs from the one the published messages give")
    return recomputed
