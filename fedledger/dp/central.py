"""Central DP at the aggregator, for consortia that run without secure aggregation.

The aggregator already sees every update, so it adds the noise itself: Gaussian noise of
standard deviation ``z * max_weight * clip`` on each entry's weighted sum, i.e. divided by that
entry's public weight on the mean. The noise comes from a 256-bit seed through numpy's PCG64DXSM,
so co-signing nodes given the seed recompute the noisy model bit for bit (the seed goes to the
co-signers only: it protects the released model from everyone else, not from them).
"""

from __future__ import annotations

import numpy as np

from fedledger.dp.errors import DPParameterError


def central_noise(seed: bytes, length: int, std: float) -> np.ndarray:
    """Deterministic float64 Gaussian noise from a 256-bit seed."""
    if len(seed) != 32:
        raise DPParameterError("central noise seed must be 32 bytes")
    if not std > 0:
        raise DPParameterError(f"noise standard deviation must be positive, got {std!r}")
    generator = np.random.Generator(np.random.PCG64DXSM(int.from_bytes(seed, "big")))
    return generator.standard_normal(length) * std


def add_central_noise(
    mean: np.ndarray,
    coverage: np.ndarray,
    clip: float,
    noise_multiplier: float,
    max_weight: int,
    seed: bytes,
) -> np.ndarray:
    """``mean`` + N(0, (z * w_max * C)**2) / W per covered entry (float32); uncovered entries unchanged."""
    if mean.shape != coverage.shape:
        raise DPParameterError("mean and coverage differ in length")
    noise = central_noise(seed, mean.size, noise_multiplier * max_weight * clip)
    covered = coverage > 0
    out = np.asarray(mean, dtype=np.float32).copy()
    out[covered] = (mean[covered].astype(np.float64) + noise[covered] / coverage[covered]).astype(np.float32)
    return out
