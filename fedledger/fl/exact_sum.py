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
same bits either way; float64 is just faster (no int64 -> float64 conversion for the division).

Speed (each choice measured; none changes a value, since every entry's integers are computed the
same way and integer sums do not depend on grouping): updates are checked when added and kept by
reference; at the mean (or once BATCH_BYTES of them are waiting) they are folded in piece-major
order. For each CHUNK_ELEMENTS piece of the sums (rows of the leading axis) every pending update's
part is converted and added while the piece sits in the CPU cache, and the piece's mean is taken
right there, so memory sees each update once and the sums not at all: no full-size accumulator
exists unless a batch had to be folded early. The first block that covers a whole piece is
written, not added (no zeroing). Once a fold is large (KERNEL_MIN_ENTRIES), each block of a piece
is folded by one compiled loop (:mod:`fedledger.fl.grid_kernels`: convert, multiply, truncate,
add in one pass over the update) and each piece's mean by another (divide, round to the dtype);
pieces are then large (CHUNK_ELEMENTS: the sums overflow L2 into L3, but fewer pieces mean fewer
Python steps, which cost more). Below that threshold, and for what the kernels do not cover, numpy's
loops do the same operations, a pass each: updates' values are first copied into a cached
scratch (a plain copy streams from memory faster than numpy's converting multiply); float64 ->
float32 conversion of the mean goes through torch (vectorised; numpy's is not). Full-size sums
and scratch are reused between aggregations (BufferPool, per-thread scratch): fresh memory costs
a page fault and a kernel zeroing per page. Per entry only IEEE elementwise operations are used
(a multiplication, a truncation, additions, one division, one conversion): each is correctly
rounded and none is fused or reassociated by any SIMD kernel or by the compiled loops (no
fast-math), so every CPU computes the same bits on either path.

Range: values must lie strictly inside +-2**exponent, where exponent is HEADROOM_BITS above the
previous global tensor's largest magnitude, and at least MIN_EXPONENT; weights (sample counts)
sum to less than 2**WEIGHT_BITS. The grid of the weighted sum is 2**(exponent - 30), so the mean
is within n_updates / total_weight * 2**(exponent - 30) of the exact mean.
"""

from __future__ import annotations

import importlib
import math
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch

from fedledger.errors import FedLedgerError

if TYPE_CHECKING:
    from fedledger.fl.grid_kernels import BlockPlan

WEIGHT_BITS = 32
HEADROOM_BITS = 4
MIN_EXPONENT = 8  # every tensor accepts values inside +-256 at least
MAX_TOTAL_WEIGHT = 2**WEIGHT_BITS - 1
_SUM_BITS = 62  # |sum| < 2**62 leaves int64 a bit to spare
_GRID_BITS = _SUM_BITS - WEIGHT_BITS  # a weight-1 value is below 2**30 grid steps
FLOAT_EXACT_WEIGHT = 2 ** (53 - _GRID_BITS)  # total weight up to which float64 sums stay below 2**53
Rows = slice  # a piece of a tensor: rows of its leading axis
WeightRows = Callable[[Rows], np.ndarray]
Block = tuple[tuple[slice, ...], tuple[slice, ...]]  # (global slices, sub slices) of one contiguous block
# a deferred block, flat: values, scale, its global rows (start, stop), sub row - global row, the
# other axes' global and sub slices, and the compiled kernel's plan for it (None: numpy's loops)
_PendingBlock = tuple[np.ndarray, float, int, int, int, tuple[slice, ...], tuple[slice, ...], "BlockPlan | None"]
CHUNK_ELEMENTS = 1 << 18  # a piece of sums (2 MiB of float64) stays in L2/L3 while every update is added
BATCH_BYTES = 1 << 28  # updates kept by reference before they are folded into full-size sums
POOL_BYTES = 1 << 28  # sum buffers kept between aggregations (a 64M-parameter model's float64 sums)


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

    Two ways in. :meth:`defer` keeps a checked block by reference, to be folded in piece by piece
    together with every other deferred block (see "Speed"); :meth:`add_block`, :meth:`scatter`
    and :meth:`add_stack` add at once into full-size sums. Call :meth:`admit` with each update's
    weight first: it decides whether the integers live in float64 or int64 (see "Where the
    integers live"). Full-size sums come from :data:`BUFFERS` and go back there after :meth:`mean`.
    """

    def __init__(self, shape: tuple[int, ...], exponent: int) -> None:
        self.exponent = exponent
        self.shape = shape
        self._unit = 2.0 ** (_GRID_BITS - exponent)  # grid steps per unit of value
        self._rows_shape = shape or (1,)  # a 0-d tensor is handled as one row
        self._total: np.ndarray | None = None  # full-size sums, made when first needed
        self._pending: list[tuple[np.ndarray, float, list[Block]]] = []
        self._admitted = 0
        self._spent = False

    @property
    def unit(self) -> float:
        """Grid steps per unit of value (a power of two): what :meth:`mean`'s weights are multiplied by."""
        return self._unit

    @property
    def total(self) -> torch.Tensor:
        """The integer sums so far, deferred blocks included (a view: valid until :meth:`mean`)."""
        self.fold()
        return torch.from_numpy(self._sums().reshape(self.shape))

    def _dtype(self) -> type[np.floating] | type[np.signedinteger]:
        return np.float64 if self._admitted <= FLOAT_EXACT_WEIGHT else np.int64

    def _sums(self) -> np.ndarray:
        if self._spent:
            raise FedLedgerError("this exact sum is spent: mean() was already read")
        if self._total is None:
            self._total = BUFFERS.take(self._rows_shape, np.dtype(self._dtype()))
            self._total.fill(0)
        return self._total

    def admit(self, weight: int) -> None:
        """Account for values of this total weight about to be added (see "Where the integers live")."""
        self._admitted += weight
        if self._total is not None and self._total.dtype != self._dtype():
            floats = self._total
            self._total = floats.astype(np.int64)  # exact: integers < 2**53
            BUFFERS.give(floats)

    def out_of_range(self, values: torch.Tensor) -> str | None:
        return out_of_range(values, self.exponent)

    def fixed(self, values: torch.Tensor, weight: int) -> np.ndarray:
        """trunc(weight * values * unit) in the sum's dtype (a scratch array, valid until the next call)."""
        source = values.detach().numpy()
        out = _scratch("fixed", source.shape, self._dtype())
        _to_grid(source, float(weight) * self._unit, out)
        return out

    def add_block(self, values: np.ndarray, weight: int, target: tuple[slice, ...]) -> None:
        """total[target] += trunc(weight * values * unit) now; a value out of range adds nothing."""
        problem = out_of_range(torch.from_numpy(values), self.exponent)
        if problem:
            raise FixedPointRangeError(problem)
        total = self._sums().reshape(self.shape)[target]
        np.add(total, self.fixed(torch.from_numpy(values), weight), out=total)

    def scatter(self, values: torch.Tensor, weight: int, index: tuple[torch.Tensor, ...]) -> None:
        """total[index] += trunc(weight * values * unit) now (a checked, scattered mapping)."""
        total = torch.from_numpy(self._sums().reshape(self.shape))
        total.index_put_(index, torch.from_numpy(self.fixed(values, weight)), accumulate=True)

    def defer(self, values: np.ndarray, weight: int, blocks: list[Block]) -> None:
        """Add trunc(weight * values * unit) over (global, sub) slice ``blocks`` at the next fold.

        ``values`` must already be checked (range) and stay unchanged until then: it is kept by
        reference, not copied."""
        if not self.shape:
            values, blocks = values.reshape(1), [((slice(0, 1),), (slice(0, 1),))]
        self._pending.append((values, float(weight) * self._unit, blocks))

    def fold(self) -> None:
        """Add every deferred block into the full-size sums, piece by piece."""
        if not self._pending:
            return
        total, blocks = self._sums(), self._pending_blocks(_kernels(self._pending_entries()))
        for rows in _row_chunks(self._rows_shape):
            self._fold_rows(total[rows], rows, False, blocks)
        self._pending.clear()

    def _pending_entries(self) -> int:
        return sum(values.size for values, _, _ in self._pending)

    def _pending_blocks(self, kernels: ModuleType | None) -> list[_PendingBlock]:
        """Every deferred block, flat, with how the compiled kernel folds it (None: numpy's loops,
        the same bits)."""
        out = []
        for values, scale, blocks in self._pending:
            for target, source in blocks:
                plan = None if kernels is None else kernels.plan_block(values, source[1:], self._rows_shape, target[1:])
                shift = source[0].start - target[0].start
                out.append((values, scale, target[0].start, target[0].stop, shift, target[1:], source[1:], plan))
        return out

    def _fold_rows(self, acc: np.ndarray, rows: slice, fresh: bool, blocks: list[_PendingBlock]) -> None:
        """acc (rows ``rows`` of the sums) += every deferred block's part in those rows.

        ``fresh``: acc holds nothing yet; the first block covering all of it is written, not
        added, and acc is zeroed otherwise."""
        first, last = rows.start, rows.start + acc.shape[0]
        for values, scale, start, stop, shift, target_tail, source_tail, plan in blocks:
            low, high = (start if start > first else first), (stop if stop < last else last)
            if low >= high:
                continue
            write = False
            if fresh:
                fresh = False
                write = high - low == acc.shape[0] and all(
                    s.stop - s.start == n for s, n in zip(target_tail, acc.shape[1:], strict=True)
                )
                if not write:
                    acc.fill(0)
            if plan is None:
                source_block = (slice(low + shift, high + shift), *source_tail)
                _fold_block(values[source_block], scale, acc[(slice(low - first, high - first), *target_tail)], write)
            else:
                plan.fold(values, low + shift, scale, acc, low - first, high - low, write)
        if fresh:
            acc.fill(0)

    def add_stack(self, stack: torch.Tensor, keep: torch.Tensor) -> None:
        """Add the kept values of ``stack`` (one row per update, weight 1 each) along dim 0."""
        self.admit(int(stack.shape[0]))
        fixed = np.zeros(tuple(stack.shape), dtype=np.int64)
        np.multiply(
            stack.detach().numpy(), self._unit, out=fixed, where=keep.numpy(), dtype=np.float64, casting="unsafe"
        )
        sums = self._sums()
        np.add(sums, fixed.sum(axis=0).reshape(sums.shape), out=sums, casting="unsafe")  # exact: integers

    def mean(self, weights_of: WeightRows, previous: torch.Tensor, covered: bool = False) -> torch.Tensor:
        """total / weight where weight > 0, ``previous`` elsewhere, in ``previous``'s dtype; spends the sum.

        Deferred blocks are folded in here, piece by piece, and each piece's mean is taken while
        its sums are in the cache: without an earlier fold, no full-size sums exist at all.
        ``weights_of(rows)`` gives the weights of those rows times :attr:`unit` (integers times a
        power of two: exact), broadcastable to them (so a caller can compute them piece by piece,
        never as one dense array). Per entry: the integer as float64 (exact below 2**53, correctly
        rounded above), one division by weight * unit (folding the grid's power of two into the
        divisor commutes with rounding), one cast to the dtype; each correctly rounded, so the
        same on any CPU. Written into one fresh array. ``covered``: the caller knows no weight is
        0, so the search for uncovered entries is skipped.
        """
        if self._spent:
            raise FedLedgerError("this exact sum is spent: mean() was already read")
        prev = previous.detach().numpy().reshape(self._rows_shape)
        out = np.empty(self._rows_shape, dtype=prev.dtype)
        own = (
            None
            if self._total is not None
            else _scratch("piece", (_rows_per_piece(self._rows_shape), *self._rows_shape[1:]), self._dtype())
        )
        kernels = _kernels(self._pending_entries())
        blocks = self._pending_blocks(kernels)
        with np.errstate(divide="ignore", invalid="ignore"):  # uncovered entries are replaced below
            for rows in _row_chunks(self._rows_shape):
                piece = out[rows]
                if own is None:
                    acc = self._sums()[rows]
                    self._fold_rows(acc, rows, False, blocks)
                else:
                    acc = own[: piece.shape[0]]
                    self._fold_rows(acc, rows, True, blocks)
                weights = weights_of(rows)
                if kernels is None or not kernels.divide_into(acc, weights, piece):
                    quotient = acc if acc.dtype == np.float64 else _scratch("quotient", acc.shape, np.float64)
                    np.divide(acc, weights, out=quotient)
                    _narrow(quotient, piece)
                if covered:
                    continue
                uncovered = weights == 0
                if uncovered.any():
                    np.copyto(piece, prev[rows], where=uncovered)
        self.release()
        return torch.from_numpy(out.reshape(self.shape))

    def release(self) -> None:
        """Hand the sums' memory back to :data:`BUFFERS`; the sum cannot be used afterwards."""
        self._spent = True
        self._pending.clear()
        if self._total is not None:
            BUFFERS.give(self._total)
            self._total = None


class BufferPool:
    """Sum buffers kept for the next aggregation, up to ``max_bytes``.

    Why: a fresh array of a large model's size costs a page fault and a kernel zeroing per page on
    first touch, more than the additions into it; a reused one costs nothing. Contents are not
    cleared (ExactSum zeroes or overwrites what it takes). Thread-safe.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        size = math.prod(shape)
        with self._lock:
            for i, buffer in enumerate(self._free):
                if buffer.size == size and buffer.dtype == dtype:
                    return self._free.pop(i).reshape(shape)
        return np.empty(size, dtype=dtype).reshape(shape)

    def give(self, buffer: np.ndarray) -> None:
        """Keep ``buffer`` (an array from :meth:`take` or a fresh one) for reuse; the caller drops it."""
        whole = buffer if buffer.base is None else buffer.base
        if not isinstance(whole, np.ndarray) or whole.base is not None or whole.nbytes != buffer.nbytes:
            return  # part of something else: its owner decides
        with self._lock:
            kept = sum(b.nbytes for b in self._free)
            if kept + whole.nbytes <= self.max_bytes:
                self._free.append(whole)


BUFFERS = BufferPool(POOL_BYTES)


def rows_of(weights: np.ndarray) -> WeightRows:
    """``weights_of`` for a whole weight array broadcastable to the tensor."""
    if weights.ndim == 0 or weights.shape[0] == 1:
        return lambda rows: weights
    return lambda rows: weights[rows]


def _fold_block(values: np.ndarray, scale: float, dest: np.ndarray, write: bool) -> None:
    """dest (+)= trunc(values * scale) with numpy's elementwise loops: the reference the compiled
    kernel must match bit for bit, and the path for what it does not cover."""
    if write:
        _to_grid(_cached(values), scale, dest)
        return
    fixed = _scratch("fixed", values.shape, dest.dtype.type)
    _to_grid(_cached(values), scale, fixed)
    np.add(dest, fixed, out=dest)


KERNEL_MIN_ENTRIES = 1 << 20  # update entries of one tensor's fold from which loading the kernels pays
_KERNEL_MODULE = "fedledger.fl.grid_kernels"


def _kernels(entries: int) -> ModuleType | None:
    """The compiled kernels (:mod:`fedledger.fl.grid_kernels`) once loaded in this process, loaded
    by the first fold of at least KERNEL_MIN_ENTRIES entries; else None: numpy's loops (the same
    bits). Why wait: loading numba costs about half a second once per process, which rounds of
    small models (nodes recomputing a 20 k-parameter CNN in 2 ms) would never win back."""
    loaded = sys.modules.get(_KERNEL_MODULE)
    if loaded is not None or entries < KERNEL_MIN_ENTRIES:
        return loaded
    return importlib.import_module(_KERNEL_MODULE)


def _to_grid(values: np.ndarray, scale: float, out: np.ndarray) -> None:
    """out = trunc(values * scale): one float64 multiplication (correctly rounded, never fused
    with an addition) and a truncation (exact; a truncating cast for int64), so the same integers
    on any CPU."""
    np.multiply(values, scale, out=out, dtype=np.float64, casting="unsafe")
    if out.dtype == np.float64:
        np.trunc(out, out=out)


_SCRATCH = threading.local()  # per thread: a piece's grid integers and a piece of sums, reused


def _scratch(kind: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A reusable array of this shape and dtype (contents undefined), one per ``kind`` and thread."""
    size = math.prod(shape)
    key = f"{kind}:{np.dtype(dtype).str}"
    buffers = _SCRATCH.__dict__
    if key not in buffers or buffers[key].size < size:
        buffers[key] = np.empty(max(size, CHUNK_ELEMENTS), dtype=dtype)
    return buffers[key][:size].reshape(shape)


def _narrow(values: np.ndarray, out: np.ndarray) -> None:
    """out = values (float64) rounded to out's dtype, correctly (round to nearest even). torch's
    float64 -> float32 conversion is vectorised and numpy's is not; other dtypes go through numpy."""
    if out.dtype == np.float32:
        torch.from_numpy(out).copy_(torch.from_numpy(values))
    else:
        np.copyto(out, values, casting="same_kind")


def _cached(values: np.ndarray) -> np.ndarray:
    """A copy of ``values`` in a reused scratch array. Why: a plain copy streams from memory at
    full speed while numpy's converting multiply does not, so converting from the cached copy is
    faster than converting from memory directly."""
    copy = _scratch("source", values.shape, values.dtype.type)
    np.copyto(copy, values)
    return copy


def _rows_per_piece(shape: tuple[int, ...]) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))


def _row_chunks(shape: tuple[int, ...]) -> Iterator[slice]:
    """Slices of the leading axis holding about CHUNK_ELEMENTS entries each."""
    step = _rows_per_piece(shape)
    for start in range(0, shape[0], step):
        yield slice(start, min(start + step, shape[0]))
