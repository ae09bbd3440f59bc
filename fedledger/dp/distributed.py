"""Distributed noise: each member adds a Skellam share in the ring, so the sum carries the target.

Why Skellam: the sum of independent Skellam(mu_i) variables is exactly Skellam(sum mu_i), so
shares added by the members inside secure aggregation give the aggregate the planned noise, and
nobody (not even the aggregator) sees a noiseless update or sum. The target is variance
(z * Delta)**2 per entry, Delta the L2 sensitivity of one member's weighted, quantised contribution
in ring units. Why shares are sized for the fewest survivors a round can complete with: a round
that completes has at least t of its n members, so an entry covered by c members keeps at least
c - (n - t) of them (and one, if it is released at all); each member adds target / that number on
the entry, so every released entry carries at least the target whoever drops out, and the budget
checked before the round stays an upper bound on what it spends (:func:`realised_noise_multiplier`
says how much more a round with fewer dropouts carries).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping

import numpy as np

from fedledger.dp.accountant import RoundPrivacy
from fedledger.dp.errors import DPParameterError

TAIL_SIGMAS = 20  # |total noise| < 20 sigma except with probability far below 2**-128
MAX_SHARE_MU = 2.0**60  # numpy's samplers take int64 counts: 2 mu plus its tail must stay below 2**63


def ring_sensitivity(clip: float, frac_bits: int, max_weight: int, dimension: int) -> float:
    """L2 sensitivity of one member's ``w * rint(x * 2**f)`` with ||x|| <= clip (rounding included)."""
    if clip <= 0 or max_weight < 1 or dimension < 1:
        raise DPParameterError("clip, weight and dimension must be positive")
    return max_weight * (clip * 2.0**frac_bits + math.sqrt(dimension) / 2)


def noise_tail(noise_multiplier: float, sensitivity: float, spread: float = 1.0) -> int:
    """Ring headroom to reserve for the summed noise (pass to ``choose_ring``); ``spread`` is the largest
    ratio of an entry's total noise variance to the target (:func:`noise_spread`)."""
    return math.ceil(TAIL_SIGMAS * noise_multiplier * sensitivity * math.sqrt(spread))


def coverage_counts(positions: Iterable[np.ndarray], length: int) -> np.ndarray:
    """How many of the given members cover each global entry."""
    counts = np.zeros(length, dtype=np.int64)
    for p in positions:
        counts[p] += 1
    return counts


def sized_coverage(positions: Mapping[int, np.ndarray], length: int, threshold: int) -> np.ndarray:
    """Per entry, the members its shares are sized for: the fewest of its c covering members a round with
    at least ``threshold`` of the ``len(positions)`` members keeps, max(c - (n - t), 1); 0 where nobody covers."""
    if not 1 <= threshold <= len(positions):
        raise DPParameterError(f"threshold {threshold} must be in [1, {len(positions)}]")
    counts = coverage_counts(positions.values(), length)
    return np.where(counts > 0, np.maximum(counts - (len(positions) - threshold), 1), 0)


def noise_spread(counts: np.ndarray, sized: np.ndarray) -> float:
    """The largest ratio of total to target noise variance on an entry when every member adds its share."""
    covered = counts > 0
    return float(np.max(counts[covered] / sized[covered])) if covered.any() else 1.0


def skellam_share(
    own_positions: np.ndarray,
    counts: np.ndarray,
    noise_multiplier: float,
    sensitivity: float,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """This member's noise share (int64, ring units) at its positions: Skellam(mu / count), ``counts``
    the members each entry's shares are sized for (:func:`sized_coverage`)."""
    if noise_multiplier <= 0:
        raise DPParameterError(f"noise multiplier must be positive, got {noise_multiplier!r}")
    here = counts[own_positions]
    if here.size and here.min() < 1:
        raise DPParameterError("coverage counts must include this member")
    total_mu = (noise_multiplier * sensitivity) ** 2 / 2  # Skellam(mu) has variance 2 mu
    lam = total_mu / here.astype(np.float64)
    if lam.size and not float(lam.max()) < MAX_SHARE_MU:
        raise DPParameterError(f"a noise share of variance {2 * float(lam.max()):.3g} ring units does not fit int64")
    rng = rng or np.random.Generator(np.random.PCG64DXSM(secrets.randbits(256)))
    # Skellam(lam) = A - B for independent A, B ~ Poisson(lam), drawn as T - 2 Binomial(T, 1/2) with
    # T = A + B ~ Poisson(2 lam): numpy's Poisson sampler drifts from Poisson in double precision at the
    # 1e13..1e15 a real round needs (a variance off by several per cent), and this form's variance is
    # T's mean alone, while the fair-coin binomial stays exact at these sizes (tests/dp/test_dp_noise.py).
    total = rng.poisson(2 * lam).astype(np.int64)
    return total - 2 * rng.binomial(total, 0.5).astype(np.int64)


def realised_noise_multiplier(noise_multiplier: float, sized: np.ndarray, surviving: np.ndarray) -> float:
    """The multiplier the aggregate actually carries: z * sqrt(min over released entries of s/m).

    ``sized`` (m) counts the members each entry's shares were sized for, ``surviving`` (s) those
    whose input the round used; entries nobody survived to cover are not released.
    """
    released = surviving > 0
    if not released.any():
        return math.inf
    if (sized[released] < 1).any():
        raise DPParameterError("survivors cover an entry no share was sized for")
    fraction = float(np.min(surviving[released] / sized[released]))
    return noise_multiplier * math.sqrt(fraction)


def distributed_round_privacy(
    clip: float,
    noise_multiplier: float,
    frac_bits: int,
    weights: Mapping[int, int],
    positions: Mapping[int, np.ndarray],
    survivors: Iterable[int],
    length: int,
    threshold: int,
) -> RoundPrivacy:
    """The round record's DP parameters of a distributed-noise round, from public data only.

    ``positions``/``weights``: the round's members (its setup), whose shares were sized for at least
    ``threshold`` survivors (:func:`sized_coverage`). The record names the planned z: with at least
    ``threshold`` survivors every released entry carries it or more, which is what the accountant
    charges. The sensitivity uses the largest weight and sub-model (:func:`planned_sensitivity`).
    """
    chosen = sorted(set(survivors))
    if not chosen or not set(chosen) <= set(positions):
        raise DPParameterError("survivors must be a non-empty subset of the round's members")
    if len(chosen) < threshold:
        raise DPParameterError(f"only {len(chosen)} survivors, the noise shares were sized for {threshold}")
    sized = sized_coverage(positions, length, threshold)
    surviving = coverage_counts([positions[m] for m in chosen], length)
    if realised_noise_multiplier(noise_multiplier, sized, surviving) < noise_multiplier:
        raise DPParameterError("the survivors carry less than the planned noise")  # cannot happen with >= t
    return RoundPrivacy(
        clip=clip,
        noise_multiplier=noise_multiplier,
        sample_rate=1.0,
        participants=len(chosen),
        mechanism="skellam",
        ring_sensitivity=planned_sensitivity(clip, frac_bits, weights, positions),
        dimension=max(int(p.size) for p in positions.values()),
    )


def planned_sensitivity(
    clip: float, frac_bits: int, weights: Mapping[int, int], positions: Mapping[int, np.ndarray]
) -> float:
    """Delta every member sizes its share with: the largest weight and the largest sub-model."""
    return ring_sensitivity(clip, frac_bits, max(weights.values()), max(int(p.size) for p in positions.values()))


def skellam_upper_bound(clip: float, noise_multiplier: float, frac_bits: int, participants: int) -> RoundPrivacy:
    """Parameters whose epsilon bounds any distributed round's at this clip and z, before its setup is known
    (how the aggregator checks the budget before it opens a round). The Skellam RDP falls as Delta grows and
    rises with the L1 bound min(Delta**2, sqrt(d) Delta): the smallest Delta (weight 1, one entry) with a
    dimension for which that bound is Delta**2 (true for every integer vector) gives the largest epsilon."""
    sensitivity = ring_sensitivity(clip, frac_bits, 1, 1)
    return RoundPrivacy(clip, noise_multiplier, 1.0, max(participants, 1), "skellam", sensitivity,
                        math.ceil(sensitivity**2))  # fmt: skip
