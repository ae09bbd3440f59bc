"""Fixed-point encoding of float updates into the ring Z_2^bits, sample weight folded in.

Why: masks only cancel in modular arithmetic, and an integer sum is exact and order-free, so
every node decodes the same aggregate. A member sends ``w * q`` with ``q = rint(x * 2**f)``
(ties to even), reduced mod 2**bits; the sum over members is ``S = sum_u w_u q_u`` as long as
``|S| < 2**(bits-1)``. Decoding divides once by the public per-entry weight: one correctly
rounded float64 division of ``S`` by ``W * 2**f`` and one cast to float32, which is exactly
what plain alignment computes for the same quantised updates (``q / 2**f`` as float32).

The ring is 32 bits when the bound allows (upload = sub-model size), else 64 bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedledger.secagg.errors import SecAggInputError
from fedledger.secagg.layout import EntryWeights

FLOAT32_EXACT_BITS = 24  # |q| < 2**24: q / 2**f is exactly a float32
FLOAT64_EXACT_BITS = 53  # |S| < 2**53: S is exactly a float64
DEFAULT_FRAC_BITS = 16
DECODE_PIECE = 1 << 15  # entries per decoding piece: its float64 temporaries fit a core's L2 cache


@dataclass(frozen=True)
class RingSpec:
    """The ring Z_2^bits and the fixed-point scale 2**frac_bits."""

    bits: int
    frac_bits: int

    def __post_init__(self) -> None:
        if self.bits not in (32, 64):
            raise SecAggInputError(f"ring must be 32 or 64 bits, got {self.bits}")
        if not 0 <= self.frac_bits <= 30:
            raise SecAggInputError(f"fractional bits must be in [0, 30], got {self.frac_bits}")

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return np.uint32 if self.bits == 32 else np.uint64

    @property
    def signed(self) -> type[np.signedinteger]:
        return np.int32 if self.bits == 32 else np.int64

    @property
    def scale(self) -> float:
        return float(2**self.frac_bits)

    @property
    def sum_limit(self) -> int:
        """Largest |S| that decodes exactly (sign bit of the ring, exactness of float64)."""
        return min(2 ** (self.bits - 1), 2**FLOAT64_EXACT_BITS) - 1


def sum_bound(participants: int, max_weight: int, value_bound: float, frac_bits: int, noise_tail: int = 0) -> int:
    """Worst |S| for ``participants`` members of weight <= ``max_weight`` with |x| <= ``value_bound``."""
    per_value = math.ceil(value_bound * 2**frac_bits) + 1
    return participants * max_weight * per_value + noise_tail


def choose_ring(
    participants: int, max_weight: int, value_bound: float, frac_bits: int = DEFAULT_FRAC_BITS, noise_tail: int = 0
) -> RingSpec:
    """The smallest ring (32, else 64 bits) whose sum stays exact for these public parameters."""
    if participants < 1 or max_weight < 1:
        raise SecAggInputError("participants and max weight must be positive")
    if not (math.isfinite(value_bound) and value_bound > 0):
        raise SecAggInputError(f"value bound must be a positive number, got {value_bound!r}")
    if value_bound * 2**frac_bits >= 2**FLOAT32_EXACT_BITS - 1:
        raise SecAggInputError(
            f"value bound {value_bound} with {frac_bits} fractional bits leaves float32 (reduce one of them)"
        )
    need = sum_bound(participants, max_weight, value_bound, frac_bits, noise_tail)
    for bits in (32, 64):
        spec = RingSpec(bits, frac_bits)
        if need <= spec.sum_limit:
            return spec
    raise SecAggInputError(f"sum bound {need} exceeds 2**53: fewer fractional bits or smaller weights")


def quantise(values: np.ndarray, spec: RingSpec, value_bound: float) -> np.ndarray:
    """Integers q = rint(x * 2**f) (int64); refuses NaN, Inf and |x| > value_bound."""
    x = np.asarray(values)
    if x.size:
        low, high = float(np.min(x)), float(np.max(x))  # NaN propagates into both
        if math.isnan(low) or math.isnan(high) or math.isinf(low) or math.isinf(high):
            raise SecAggInputError("update holds NaN or Inf")
        if max(-low, high) > value_bound:
            raise SecAggInputError(f"update value {max(-low, high):.6g} exceeds the bound {value_bound}")
    scaled = x.astype(np.float64)
    scaled *= spec.scale  # exact: a power of two
    return np.rint(scaled, out=scaled).astype(np.int64)


def dequantise(values: np.ndarray, spec: RingSpec, value_bound: float) -> np.ndarray:
    """The float32 values the ring actually carries: q / 2**f (exact in float32)."""
    return (quantise(values, spec, value_bound).astype(np.float64) / spec.scale).astype(np.float32)


def encode(values: np.ndarray, weight: int, spec: RingSpec, value_bound: float) -> np.ndarray:
    """w * q mod 2**bits as the ring's unsigned dtype."""
    if not isinstance(weight, int) or weight <= 0:
        raise SecAggInputError(f"weight must be a positive integer, got {weight!r}")
    q = quantise(values, spec, value_bound) * np.int64(weight)
    return to_ring(q, spec)


def to_ring(values: np.ndarray, spec: RingSpec) -> np.ndarray:
    """Signed int64 values reduced mod 2**bits (two's complement wrap)."""
    return np.asarray(values, dtype=np.int64).view(np.uint64).astype(spec.dtype)


def decode(
    ring_sum: np.ndarray, coverage: np.ndarray | EntryWeights, previous: np.ndarray, spec: RingSpec
) -> np.ndarray:
    """float32 mean S / (W * 2**f) where W > 0, ``previous`` where W == 0 (W: ``coverage``, the
    weight per entry as int64 or as :class:`EntryWeights`).

    Piece by piece (each piece's float64 temporaries stay in cache); every entry is still one
    exact conversion, one correctly rounded division and one rounding to float32.
    """
    length = coverage.length if isinstance(coverage, EntryWeights) else coverage.size
    if not (ring_sum.shape == previous.shape == (length,)):
        raise SecAggInputError("sum, coverage and previous values differ in length")
    signed = ring_sum.astype(spec.dtype, copy=False).view(spec.signed)
    out = np.empty(ring_sum.shape, dtype=np.float32)
    quotient = np.empty(min(DECODE_PIECE, length), dtype=np.float64)
    for start in range(0, length, DECODE_PIECE):
        stop = min(start + DECODE_PIECE, length)
        divisor, uncovered = _divisors(coverage, start, stop, spec.scale)
        q = quotient[: stop - start]
        np.copyto(q, signed[start:stop])  # exact: |S| < 2**53
        np.divide(q, divisor, out=q)  # correctly rounded
        out[start:stop] = q
        if uncovered is not None:
            np.copyto(out[start:stop], np.asarray(previous[start:stop], dtype=np.float32), where=uncovered)
    return out


def _divisors(
    coverage: np.ndarray | EntryWeights, start: int, stop: int, scale: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """W * 2**f of entries [start, stop) as float64 (1 where W == 0), and where W == 0 (None: nowhere).

    Exact: an integer weight below 2**53 times a power of two. From segments when the weights
    have no entry-by-entry part: one repeat of a few values, no per-entry integer conversion.
    """
    if isinstance(coverage, EntryWeights) and coverage.scattered is None:
        levels, lengths = coverage.segments(start, stop)
        empty = levels <= 0
        divisor = np.repeat(np.where(empty, 1.0, levels * scale), lengths)
        return divisor, np.repeat(empty, lengths) if empty.any() else None
    weight = coverage.piece(start, stop) if isinstance(coverage, EntryWeights) else coverage[start:stop]
    divisor = weight * scale
    uncovered = weight <= 0
    if not uncovered.any():
        return divisor, None
    divisor[uncovered] = 1.0
    return divisor, uncovered
