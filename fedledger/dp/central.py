"""Central DP at the aggregator, for consortia that run without secure aggregation.

The aggregator already sees every update, so it adds the noise itself: Gaussian noise of
standard deviation ``z * max_weight * clip`` on each entry's weighted sum, i.e. divided by that
entry's public weight on the mean. Co-signing nodes given the seed recompute the noisy model bit
for bit on any CPU, so the sampler uses no library transcendental: the bits come from SHAKE-256
over the 256-bit seed (integers: the same on every machine and numpy version), and normals from
Marsaglia's polar method with a logarithm built from IEEE-754 add, multiply, divide and square
root only (each correctly rounded by the standard; numpy never fuses separate operations), where
libm's ``log``/``exp`` (numpy's ziggurat tail, torch's sampler) may pick per-CPU kernels.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from fedledger.dp.errors import DPParameterError

_STREAM = b"fedledger/central-dp/normal-stream/v1"
_LN2_HI = 0.693147180369123816490  # ln 2 with its low bits cut off, so e * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_ATANH_TERMS = tuple(1.0 / (2 * k + 1) for k in range(13))  # 2 atanh(t) = 2t sum t^2k / (2k + 1)


def portable_log(x: np.ndarray) -> np.ndarray:
    """Natural log of positive float64 values to ~1 ulp, from basic IEEE operations only."""
    mantissa, exponent = np.frexp(np.asarray(x, dtype=np.float64))
    low = mantissa < math.sqrt(0.5)  # bring the mantissa to [sqrt(1/2), sqrt(2)): |t| <= 0.172
    mantissa = np.where(low, mantissa * 2.0, mantissa)
    e = (exponent - low).astype(np.float64)
    t = (mantissa - 1.0) / (mantissa + 1.0)
    t2 = t * t
    series = np.full_like(t, _ATANH_TERMS[-1])
    for coefficient in reversed(_ATANH_TERMS[:-1]):  # t2**13 / 27 < 2**-60: below float64's reach
        series = series * t2 + coefficient
    return e * _LN2_HI + (e * _LN2_LO + 2.0 * t * series)


def _uniform_pairs(seed: bytes, chunk: int, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """``pairs`` pairs uniform on [-1, 1) with 53 random bits each, from chunk ``chunk`` of the stream."""
    raw = hashlib.shake_256(_STREAM + seed + chunk.to_bytes(8, "big")).digest(16 * pairs)
    words = np.frombuffer(raw, dtype="<u8") >> np.uint64(11)
    uniform = words.astype(np.float64) * 2.0**-52 - 1.0
    return uniform[0::2], uniform[1::2]


def standard_normals(seed: bytes, length: int) -> np.ndarray:
    """``length`` independent N(0, 1) float64 values, a fixed function of the 256-bit ``seed``."""
    if len(seed) != 32:
        raise DPParameterError("central noise seed must be 32 bytes")
    out: list[np.ndarray] = []
    have, chunk = 0, 0
    while have < length:
        u, v = _uniform_pairs(seed, chunk, (length - have) * 2 // 3 + 64)  # ~79 % of pairs are kept
        s = u * u + v * v
        keep = (s > 0) & (s < 1)
        u, v, s = u[keep], v[keep], s[keep]
        factor = np.sqrt(-2.0 * portable_log(s) / s)
        out.append(np.stack([u * factor, v * factor], axis=1).ravel())
        have += 2 * int(keep.sum())
        chunk += 1
    return np.concatenate(out)[:length] if out else np.zeros(0, dtype=np.float64)


def central_noise(seed: bytes, length: int, std: float) -> np.ndarray:
    """Deterministic float64 Gaussian noise of standard deviation ``std`` from a 256-bit seed."""
    if not (math.isfinite(std) and std > 0):
        raise DPParameterError(f"noise standard deviation must be positive, got {std!r}")
    return standard_normals(seed, length) * std


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
