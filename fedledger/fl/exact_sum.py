"""Exact, order-free weighted sums of float tensors: integers on a fixed-point grid.

Why: honest nodes on different CPUs must recompute the aggregator's global model bit for bit.
A float sum depends on the order of its additions and on the SIMD kernel (fused multiply-add,
vector width); an exact integer sum depends on neither. Each weighted value n_u * x is put on a
fixed grid chosen per tensor before any update is seen (from the previous global model, which
every node has) by one correctly rounded multiplication and a truncation, then summed exactly.
Only the final mean rounds: correctly rounded float64 operations per entry, the same on every
CPU, then one rounding to the tensor's dtype.

Where the integers live: float64 while the round's weights total at most FLOAT_EXACT_WEIGHT,
int64 beyond. A grid integer is below n_u * 2**30 in magnitude, so every partial sum of an
entry is below (sum of weights) * 2**30 <= 2**53, and float64 holds every integer up to 2**53
exactly: each float64 addition is then exact, hence independent of order and kernel. When a
round's weights pass the bound, the sums are converted to int64 (exact: they are integers below
2**53) and carried on there, up to 2**62. Both hold the same integers, so the result is the
same bits either way; float64 is just faster (numpy has no vectorised int64 -> float64 cast for
the final division).

Speed: the work streams through CHUNK_ELEMENTS-sized pieces (rows of the leading axis), so the
scratch of a piece stays in the CPU cache between its conversion and its addition and memory
sees only the update (read once) and the accumulator (read and written once). Chunking changes
no value: every entry's integer is computed and added the same way, only in pieces.

Range: values must lie strictly inside +-2**exponent, where exponent is HEADROOM_BITS above the
previous global tensor's largest magnitude, and at least MIN_EXPONENT; weights (sample counts)
sum to less than 2**WEIGHT_BITS. The grid of the weighted sum is 2**(exponent - 30), so the mean
is within n_updates / total_weight * 2**(exponent - 30) of the exact mean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import torch

from fedledger.errors import FedLedgerError

WEIGHT_BITS = 32
HEADROOM_BITS = 4
MIN_EXPONENT = 8  # every tensor accepts values inside +-256 at least
MAX_TOTAL_WEIGHT = 2**WEIGHT_BITS - 1
_SUM_BITS = 62  # |sum| < 2**62 leaves int64 a bit to spare
_GRID_BITS = _SUM_BITS - WEIGHT_BITS  # a weight-1 value is below 2**30 grid steps
FLOAT_EXACT_WEIGHT = 2 ** (53 - _GRID_BITS)  # total weight up to which float64 sums stay below 2**53
Rows = slice | tuple[()]  # a piece of a tensor: rows of its leading axis (all of a 0-d tensor)
WeightRows = Callable[[Rows], np.ndarray]
CHUNK_ELEMENTS = 1 << 15  # 256 KiB of scratch: stays in L2 between convert and add


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
    """An exact accumulator for one tensor: add weighted values, read one rounded mean.

    Call :meth:`admit` with each update's weight before adding it: it keeps the integers in
    float64 while that is exact and moves them to int64 when it would no longer be.
    """

    def __init__(self, shape: tuple[int, ...], exponent: int) -> None:
        self.exponent = exponent
        self._unit = 2.0 ** (_GRID_BITS - exponent)  # grid steps per unit of value
        self.total = torch.from_numpy(np.zeros(shape, dtype=np.float64))  # lazily zeroed pages: fast
        self._admitted = 0
        self._scratch = np.empty(0, dtype=np.float64)  # grown on demand, reused by every update

    def admit(self, weight: int) -> None:
        """Account for values of this total weight about to be added (see "Where the integers live")."""
        self._admitted += weight
        if self._admitted > FLOAT_EXACT_WEIGHT and self.total.dtype == torch.float64:
            self.total = torch.from_numpy(self.total.numpy().astype(np.int64))  # exact: integers < 2**53
            self._scratch = np.empty(0, dtype=np.int64)

    def out_of_range(self, values: torch.Tensor) -> str | None:
        return out_of_range(values, self.exponent)

    def _scratch_for(self, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        if self._scratch.size < size:
            self._scratch = np.empty(size, dtype=self._scratch.dtype)
        return self._scratch[:size].reshape(shape)

    def fixed(self, values: torch.Tensor, weight: int) -> np.ndarray:
        """trunc(weight * values * unit) in the sum's dtype (a scratch array, valid until the next call)."""
        source = values.detach().numpy()
        out = self._scratch_for(source.shape)
        _to_grid(source, float(weight) * self._unit, out)
        return out

    def add_block(self, values: np.ndarray, weight: int, target: tuple[slice, ...]) -> None:
        """total[target] += trunc(weight * values * unit), piece by piece (see the module's "Speed").

        Each piece's range is checked while it is in the cache; a value outside it (or NaN)
        raises :class:`FixedPointRangeError` with nothing of this block added: the pieces already
        added are subtracted again, which is exact (integer sums, and trunc(-a) = -trunc(a)).
        """
        total = self.total.numpy()[target]
        scale = float(weight) * self._unit
        stopped = self._accumulate(values, scale, total, 2.0**self.exponent)
        if stopped is not None:
            if stopped:
                self._accumulate(values[:stopped], -scale, total[:stopped], None)
            raise FixedPointRangeError(out_of_range(torch.from_numpy(values), self.exponent) or "out of range")

    def _accumulate(self, values: np.ndarray, scale: float, total: np.ndarray, bound: float | None) -> int | None:
        """Add piece by piece; with a bound, stop before the first piece outside it and return its first row."""
        for rows in _row_chunks(values.shape):
            piece, dest = values[rows], total[rows]
            if bound is not None and piece.size and not (-bound < piece.min() and piece.max() < bound):
                return rows.start if isinstance(rows, slice) else 0
            fixed = self._scratch_for(piece.shape)
            _to_grid(piece, scale, fixed)
            np.add(dest, fixed, out=dest)
        return None

    def add_stack(self, stack: torch.Tensor, keep: torch.Tensor) -> None:
        """Add the kept values of ``stack`` (one row per update, weight 1 each) along dim 0."""
        self.admit(int(stack.shape[0]))
        fixed = np.zeros(tuple(stack.shape), dtype=np.int64)
        np.multiply(
            stack.detach().numpy(), self._unit, out=fixed, where=keep.numpy(), dtype=np.float64, casting="unsafe"
        )
        self.total += torch.from_numpy(fixed.sum(axis=0))  # integer sums below 2**53 or int64: exact

    def mean(self, weights_of: WeightRows, previous: torch.Tensor, covered: bool = False) -> torch.Tensor:
        """total / weight where weight > 0, ``previous`` elsewhere, in ``previous``'s dtype.

        ``weights_of(rows)`` gives the integer-valued weights of those rows, broadcastable to
        them (so a caller can compute them piece by piece, never as one dense array). Per entry:
        the integer as float64 (exact below 2**53, correctly rounded above), one division, one
        cast to the dtype, one exact power-of-two scaling; each correctly rounded, so the same on
        any CPU. Written into one fresh array. ``covered``: the caller knows no weight is 0, so
        the search for uncovered entries is skipped.
        """
        prev = previous.detach().numpy()
        out = np.empty(prev.shape, dtype=prev.dtype)
        total = self.total.numpy()
        with np.errstate(divide="ignore", invalid="ignore"):  # uncovered entries are replaced below
            for rows in _row_chunks(out.shape):
                piece, weights = out[rows], weights_of(rows)
                np.divide(total[rows], weights, out=piece, dtype=np.float64, casting="same_kind")
                np.multiply(piece, 1.0 / self._unit, out=piece)
                if covered:
                    continue
                uncovered = weights == 0
                if uncovered.any():
                    np.copyto(piece, prev[rows], where=uncovered)
        return torch.from_numpy(out)


def rows_of(weights: np.ndarray) -> WeightRows:
    """``weights_of`` for a whole weight array broadcastable to the tensor."""
    if weights.ndim == 0 or weights.shape[0] == 1:
        return lambda rows: weights
    return lambda rows: weights[rows]


def _to_grid(values: np.ndarray, scale: float, out: np.ndarray) -> None:
    """out = trunc(values * scale): one float64 multiplication (correctly rounded, never fused
    with an addition) and a truncation (exact; a truncating cast for int64), so the same integers
    on any CPU."""
    np.multiply(values, scale, out=out, dtype=np.float64, casting="unsafe")
    if out.dtype == np.float64:
        np.trunc(out, out=out)


def _row_chunks(shape: tuple[int, ...]) -> Iterator[Rows]:
    """Slices of the leading axis holding about CHUNK_ELEMENTS entries each (the whole of a 0-d array)."""
    if not shape:
        yield ()
        return
    step = max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))
    for start in range(0, shape[0], step):
        yield slice(start, start + step)
