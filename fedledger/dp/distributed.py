"""Distributed noise: each member adds a Skellam share in the ring, so the sum carries the target.

Why Skellam: the sum of independent Skellam(mu_i) variables is exactly Skellam(sum mu_i), so
shares added by the members inside secure aggregation give the aggregate exactly the planned
noise, and nobody (not even a member) sees a noiseless update of another. The target is
variance (z * Delta)**2 per entry, Delta the L2 sensitivity of one member's weighted,
quantised contribution in ring units. Entries covered by fewer members get bigger shares
(share = target / members covering the entry), so every covered entry gets the full target
when everyone submits; when members drop out the realised multiplier falls, and
:func:`realised_noise_multiplier` says by how much (it is what the accountant must be given).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping

import numpy as np

from fedledger.dp.accountant import RoundPrivacy
from fedledger.dp.errors import DPParameterError

TAIL_SIGMAS = 20  # |total noise| < 20 sigma except with probability far below 2**-128


def ring_sensitivity(clip: float, frac_bits: int, max_weight: int, dimension: int) -> float:
    """L2 sensitivity of one member's ``w * rint(x * 2**f)`` with ||x|| <= clip (rounding included)."""
    if clip <= 0 or max_weight < 1 or dimension < 1:
        raise DPParameterError("clip, weight and dimension must be positive")
    return max_weight * (clip * 2.0**frac_bits + math.sqrt(dimension) / 2)


def noise_tail(noise_multiplier: float, sensitivity: float) -> int:
    """Ring headroom to reserve for the summed noise (pass to ``choose_ring``)."""
    return math.ceil(TAIL_SIGMAS * noise_multiplier * sensitivity)


def coverage_counts(positions: Iterable[np.ndarray], length: int) -> np.ndarray:
    """How many of the given members cover each global entry."""
    counts = np.zeros(length, dtype=np.int64)
    for p in positions:
        counts[p] += 1
    return counts


def skellam_share(
    own_positions: np.ndarray,
    counts: np.ndarray,
    noise_multiplier: float,
    sensitivity: float,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """This member's noise share (int64, ring units) at its positions: Skellam(mu / count)."""
    if noise_multiplier <= 0:
        raise DPParameterError(f"noise multiplier must be positive, got {noise_multiplier!r}")
    here = counts[own_positions]
    if here.size and here.min() < 1:
        raise DPParameterError("coverage counts must include this member")
    total_mu = (noise_multiplier * sensitivity) ** 2 / 2  # Skellam(mu) has variance 2 mu
    lam = total_mu / here.astype(np.float64)
    rng = rng or np.random.Generator(np.random.PCG64DXSM(secrets.randbits(256)))
    return rng.poisson(lam).astype(np.int64) - rng.poisson(lam).astype(np.int64)


def realised_noise_multiplier(noise_multiplier: float, planned: np.ndarray, surviving: np.ndarray) -> float:
    """The multiplier the aggregate actually carries: z * sqrt(min over released entries of s/c).

    ``planned`` (c) counts the members each entry's shares were sized for, ``surviving`` (s) those
    whose input the round used; entries nobody survived to cover are not released.
    """
    released = surviving > 0
    if not released.any():
        return math.inf
    if (surviving > planned).any():
        raise DPParameterError("more survivors than planned members on some entry")
    fraction = float(np.min(surviving[released] / planned[released]))
    return noise_multiplier * math.sqrt(fraction)


def distributed_round_privacy(
    clip: float,
    noise_multiplier: float,
    frac_bits: int,
    weights: Mapping[int, int],
    positions: Mapping[int, np.ndarray],
    survivors: Iterable[int],
    length: int,
    sample_rate: float = 1.0,
) -> RoundPrivacy:
    """The round record's DP parameters of a distributed-noise round, from public data only.

    Shares were sized for every roster member (``positions``); the realised multiplier accounts
    for the members that dropped out. The sensitivity uses the largest weight and sub-model, the
    same figures every member used to size its share (:func:`planned_sensitivity`).
    """
    chosen = sorted(survivors)
    if not chosen or not set(chosen) <= set(positions):
        raise DPParameterError("survivors must be a non-empty subset of the roster")
    planned = coverage_counts(positions.values(), length)
    surviving = coverage_counts([positions[m] for m in chosen], length)
    dimension = max(int(p.size) for p in positions.values())
    return RoundPrivacy(
        clip=clip,
        noise_multiplier=realised_noise_multiplier(noise_multiplier, planned, surviving),
        sample_rate=sample_rate,
        participants=len(chosen),
        mechanism="skellam",
        ring_sensitivity=planned_sensitivity(clip, frac_bits, weights, positions),
        dimension=dimension,
    )


def planned_sensitivity(
    clip: float, frac_bits: int, weights: Mapping[int, int], positions: Mapping[int, np.ndarray]
) -> float:
    """Delta every member sizes its share with: the largest weight and the largest sub-model."""
    return ring_sensitivity(clip, frac_bits, max(weights.values()), max(int(p.size) for p in positions.values()))
