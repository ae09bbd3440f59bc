"""Exact, order-free weighted sums of float tensors: int64 fixed point.

Why: honest nodes on different CPUs must recompute the aggregator's global model bit for bit.
A float sum depends on the order of its additions and on the SIMD kernel (fused multiply-add,
vector width); an integer sum depends on neither. Each weighted value n_u * x is put on a
fixed grid chosen per tensor before any update is seen (from the previous global model, which
every node has) by one correctly rounded multiplication and a truncation, then summed in int64
exactly. Only the final mean rounds: correctly rounded float64 operations per entry, the same
on every CPU, then one rounding to the tensor's dtype. numpy does the per-element work: its
fused multiply-and-cast loop is several times faster than torch's for these dtypes.

Range: values must lie strictly inside +-2**exponent, where exponent is HEADROOM_BITS above the
previous global tensor's largest magnitude, and at least MIN_EXPONENT; weights (sample counts)
sum to less than 2**WEIGHT_BITS. The grid of the weighted sum is 2**(exponent - 30), so the mean
is within n_updates / total_weight * 2**(exponent - 30) of the exact mean.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from fedledger.errors import FedLedgerError

WEIGHT_BITS = 32
HEADROOM_BITS = 4
MIN_EXPONENT = 8  # every tensor accepts values inside +-256 at least
MAX_TOTAL_WEIGHT = 2**WEIGHT_BITS - 1
_SUM_BITS = 62  # |sum| < 2**62 leaves int64 a bit to spare


class FixedPointRangeError(FedLedgerError, ValueError):
    """A value does not fit the fixed-point range of the sum."""


def range_exponent(previous: torch.Tensor) -> int:
    """The exponent e with every accepted value inside +-2**e: headroom above ``previous``'s largest."""
    if previous.numel() == 0:
        return MIN_EXPONENT
    low, high = (float(v) for v in torch.aminmax(previous.detach()))
    largest = max(abs(low), abs(high))
    if not math.isfinite(largest):
        raise FixedPointRangeError("the previous global tensor holds NaN or Inf")
    _, exponent = math.frexp(largest)  # largest < 2**exponent
    return max(exponent + HEADROOM_BITS, MIN_EXPONENT)


def out_of_range(values: torch.Tensor, exponent: int) -> str | None:
    """Why ``values`` cannot be summed with this range (NaN, Inf or too large), or None."""
    if values.numel() == 0:
        return None
    low, high = (float(v) for v in torch.aminmax(values.detach()))
    bound = 2.0**exponent
    if -bound < low and high < bound:
        return None
    worst = high if not math.isfinite(high) or abs(high) >= abs(low) else low
    return f"value {worst:.6g} outside the aggregation range +-2**{exponent}"


class ExactSum:
    """An int64 accumulator for one tensor: add weighted values, read one rounded mean."""

    def __init__(self, shape: tuple[int, ...], exponent: int) -> None:
        self.exponent = exponent
        self._unit = 2.0 ** (_SUM_BITS - WEIGHT_BITS - exponent)  # grid steps per unit of value
        self.total = torch.from_numpy(np.zeros(shape, dtype=np.int64))  # lazily zeroed pages: fast
        self._scratch = np.empty(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)

    def out_of_range(self, values: torch.Tensor) -> str | None:
        return out_of_range(values, self.exponent)

    def fixed(self, values: torch.Tensor, weight: int) -> np.ndarray:
        """trunc(weight * values * unit) as int64 (a scratch array, valid until the next call)."""
        source = values.detach().numpy()
        out = self._scratch[: source.size].reshape(source.shape)
        # one multiplication (correctly rounded, no fused add) and a truncating cast: the same on any CPU
        np.multiply(source, float(weight) * self._unit, out=out, dtype=np.float64, casting="unsafe")
        return out

    def add_stack(self, stack: torch.Tensor, keep: torch.Tensor) -> None:
        """Add the kept values of ``stack`` (one row per update, weight 1 each) along dim 0."""
        fixed = np.zeros(tuple(stack.shape), dtype=np.int64)
        np.multiply(
            stack.detach().numpy(), self._unit, out=fixed, where=keep.numpy(), dtype=np.float64, casting="unsafe"
        )
        self.total += torch.from_numpy(fixed.sum(axis=0))  # integer sums: exact in any order

    def mean(self, weights: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """total / weights where weights > 0, ``previous`` elsewhere, in ``previous``'s dtype.

        ``weights`` is broadcastable and integer-valued. Per entry: int64 -> float64, one
        division, one cast to the dtype, one exact power-of-two scaling; each correctly rounded,
        so the same on any CPU. Written into one fresh array: large temporaries cost page faults.
        """
        out = np.empty(tuple(previous.shape), dtype=previous.detach().numpy().dtype)
        w = weights.numpy()
        with np.errstate(divide="ignore", invalid="ignore"):  # uncovered entries are replaced below
            np.divide(self.total.numpy(), w, out=out, dtype=np.float64, casting="same_kind")
        np.multiply(out, 1.0 / self._unit, out=out)
        uncovered = w == 0
        if uncovered.any():
            np.copyto(out, previous.detach().numpy(), where=uncovered)
        return torch.from_numpy(out)
