"""Compiled one-pass loops for the exact sum's hot spots (see :mod:`fedledger.fl.exact_sum`).

Why: numpy makes one pass over memory per operation (copy, multiply, truncate, add), and at a
few tenths of a nanosecond per entry those passes, not the arithmetic, are the cost. These loops
do the same correctly rounded IEEE operations on each entry in one pass: float -> float64
(exact), one multiplication by the scale, a truncation, an addition of integers (exact below
2**53 in float64, and in int64); at the mean one division and one rounding to the output dtype.
Compiled with ``fastmath=False``: no operation is contracted (a truncation sits between every
multiplication and addition anyway), reassociated or flushed to zero, so the bits are numpy's on
every CPU, whatever vector width the compiler picks.

Arrays are passed flat (contiguous, 1-d) with an offset and element steps per dimension of a
block of at most three dimensions whose innermost one is contiguous: a contiguous inner loop is
what the compiler vectorises (strided views would be gathered entry by entry). Every block is
checked against its arrays' bounds before it is touched.

Compiled on first use (0.5-1 s per dtype combination) and cached on disk by numba: in
``__pycache__`` next to this file, or in the user's cache directory (``~/.cache/numba``,
``NUMBA_CACHE_DIR`` overrides) when that is read-only; keyed by the CPU, so a shared cache never
serves code built for another one. Where no cache directory is writable, every process compiles
its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import overload

from fedledger.errors import FedLedgerError

Steps = tuple[int, int, int]  # element steps of the three dimensions of a block
SUM_DTYPES = (np.dtype(np.float64), np.dtype(np.int64))
VALUE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class KernelBoundsError(FedLedgerError, IndexError):
    """A block passed to a kernel reaches outside its array (a bug in the caller, caught before any write)."""


def _grid_integer(product: float, sums: np.ndarray) -> Any:
    """trunc(product) in the dtype of ``sums`` (what Python runs, e.g. under NUMBA_DISABLE_JIT;
    compiled code uses the overload below, which gives the same)."""
    return sums.dtype.type(np.trunc(product))


@overload(_grid_integer, jit_options={"fastmath": False})
def _grid_integer_for(product: Any, sums: Any) -> Callable[[Any, Any], Any]:
    """float64 sums: truncate (exact); int64 sums: the truncating conversion. (Called by numba with
    the arguments' numba types; the returned function must take the same parameters.)"""

    def truncating_conversion(product: Any, sums: Any) -> Any:
        return np.int64(product)

    def truncation(product: Any, sums: Any) -> Any:
        return np.trunc(product)

    return truncating_conversion if isinstance(sums.dtype, types.Integer) else truncation


def _compiled(function: Callable[..., bool]) -> Any:
    """``function`` compiled (numba dispatcher), cached on disk where numba finds a writable place."""

    def compile_with(cache: bool) -> Any:
        return njit(function, cache=cache, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")

    try:
        return compile_with(cache=True)
    except RuntimeError:  # numba: "no locator available" (no writable cache directory)
        return compile_with(cache=False)


@_compiled
def _inside(size: int, at: int, steps: Steps, shape: Steps) -> bool:
    if shape[0] <= 0 or shape[1] <= 0 or shape[2] <= 0:
        return True
    if at < 0 or steps[0] < 0 or steps[1] < 0 or steps[2] != 1:
        return False
    return at + (shape[0] - 1) * steps[0] + (shape[1] - 1) * steps[1] + shape[2] <= size


@_compiled
def _fold(
    values: np.ndarray,
    values_at: int,
    values_row_step: int,
    values_mid_step: int,
    scale: float,
    sums: np.ndarray,
    sums_at: int,
    sums_row_step: int,
    sums_mid_step: int,
    shape: Steps,
    write: bool,
) -> bool:
    values_steps, sums_steps = (values_row_step, values_mid_step, 1), (sums_row_step, sums_mid_step, 1)
    if not (_inside(values.size, values_at, values_steps, shape) and _inside(sums.size, sums_at, sums_steps, shape)):
        return False
    rows, mid, inner = shape
    if mid == 1 and values_row_step == inner and sums_row_step == inner:  # whole rows: one long inner loop
        rows, inner = 1, rows * inner
    for i in range(rows):
        for j in range(mid):
            start = values_at + i * values_row_step + j * values_mid_step
            source = values[start : start + inner]
            start = sums_at + i * sums_row_step + j * sums_mid_step
            target = sums[start : start + inner]
            if write:
                for k in range(inner):
                    target[k] = _grid_integer(np.float64(source[k]) * scale, sums)
            else:
                for k in range(inner):
                    target[k] += _grid_integer(np.float64(source[k]) * scale, sums)
    return True


@_compiled
def _divide(
    sums: np.ndarray, weights: np.ndarray, weights_at: int, weights_steps: Steps, out: np.ndarray, shape: Steps
) -> bool:
    size = shape[0] * shape[1] * shape[2]
    if sums.size < size or out.size < size:
        return False
    broadcast = weights_steps[2] == 0
    inner_steps = (weights_steps[0], weights_steps[1], 1)
    if not _inside(weights.size, weights_at, inner_steps, (shape[0], shape[1], 1 if broadcast else shape[2])):
        return False
    inner = shape[2]
    for i in range(shape[0]):
        for j in range(shape[1]):
            start = (i * shape[1] + j) * inner
            total = sums[start : start + inner]
            target = out[start : start + inner]
            at = weights_at + i * weights_steps[0] + j * weights_steps[1]
            if broadcast:
                weight = weights[at]
                for k in range(inner):
                    target[k] = np.float64(total[k]) / weight
            else:
                weight_row = weights[at : at + inner]
                for k in range(inner):
                    target[k] = np.float64(total[k]) / weight_row[k]
    return True


def _collapse(shape: tuple[int, ...], *steps: tuple[int, ...]) -> tuple[Steps, tuple[Steps, ...]] | None:
    """``shape`` and per-array element ``steps`` merged into three dimensions (leading ones of size
    1 added), or None when they need more. Adjacent dimensions merge when every array steps over
    the outer one as over the whole inner one; dimensions of size 1 are dropped."""
    dims = [(n, [s[d] for s in steps]) for d, n in enumerate(shape) if n != 1]
    merged: list[tuple[int, list[int]]] = []
    for n, inner in reversed(dims):
        if merged:
            m, outer = merged[-1]
            if all(o * m == i for o, i in zip(outer, inner, strict=True)):
                merged[-1] = (m * n, outer)
                continue
        merged.append((n, inner))
    if len(merged) > 3:
        return None
    merged += [(1, [0] * len(steps))] * (3 - len(merged))
    merged.reverse()
    new_shape = (merged[0][0], merged[1][0], merged[2][0])
    return new_shape, tuple((merged[0][1][a], merged[1][1][a], merged[2][1][a]) for a in range(len(steps)))


def _element_steps(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The element steps of a contiguous (C-order) array of this shape."""
    steps = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        steps[d] = steps[d + 1] * shape[d + 1]
    return tuple(steps)


@dataclass(frozen=True)
class BlockPlan:
    """Where one (global, sub) block of an update lies in its values and in a piece of the sums,
    its leading axis left open (pieces cut it): element offsets of the block's first row, steps
    per row and per middle index, and the middle and (contiguous) inner sizes of a row."""

    values_at: int
    values_row_step: int
    values_mid_step: int
    sums_at: int
    sums_row_step: int
    sums_mid_step: int
    mid: int
    inner: int

    def fold(
        self, values: np.ndarray, values_row: int, scale: float, sums: np.ndarray, sums_row: int, rows: int, write: bool
    ) -> None:
        """sums[rows from ``sums_row``, this block] (+)= trunc(values[rows from ``values_row``, this
        block] * scale) in one pass (``values`` and ``sums`` contiguous, of the shapes planned for;
        ``write``: set instead of add)."""
        done = _fold(
            values.reshape(-1),
            self.values_at + values_row * self.values_row_step,
            self.values_row_step,
            self.values_mid_step,
            scale,
            sums.reshape(-1),
            self.sums_at + sums_row * self.sums_row_step,
            self.sums_row_step,
            self.sums_mid_step,
            (rows, self.mid, self.inner),
            write,
        )
        if not done:
            raise KernelBoundsError(f"rows {values_row}+{rows} of {self} lie outside the arrays")


def plan_block(
    values: np.ndarray, source: tuple[slice, ...], sums_shape: tuple[int, ...], target: tuple[slice, ...]
) -> BlockPlan | None:
    """The plan of the block values[:, *source] -> sums[:, *target] (slices of the non-leading
    axes, unit steps; the sums contiguous of ``sums_shape``, or rows of them), or None when the
    kernel cannot fold it (not contiguous, a dtype it is not compiled for, or rows that do not fit
    two dimensions)."""
    if values.dtype not in VALUE_DTYPES or not values.flags.c_contiguous or values.ndim != len(sums_shape):
        return None
    for block, shape in ((source, values.shape[1:]), (target, sums_shape[1:])):
        if any(
            s.start < 0 or s.stop > n or s.stop - s.start != t.stop - t.start
            for s, t, n in zip(block, source, shape, strict=True)
        ):
            raise KernelBoundsError(f"block {source} -> {target} does not fit {values.shape} -> {sums_shape}")
    values_steps, sums_steps = _element_steps(values.shape), _element_steps(sums_shape)
    shape = tuple(s.stop - s.start for s in source)
    merged = _collapse(shape, values_steps[1:], sums_steps[1:])
    if merged is None or merged[0][0] != 1:
        return None
    (_, mid, inner), (value_tail, sum_tail) = merged
    if inner > 1 and (value_tail[2] != 1 or sum_tail[2] != 1):
        return None
    return BlockPlan(
        _offset(source, values_steps[1:]),
        values_steps[0],
        value_tail[1],
        _offset(target, sums_steps[1:]),
        sums_steps[0],
        sum_tail[1],
        mid,
        inner,
    )


def _offset(block: tuple[slice, ...], steps: tuple[int, ...]) -> int:
    return sum(s.start * step for s, step in zip(block, steps, strict=True))


def divide_into(sums: np.ndarray, weights: np.ndarray, out: np.ndarray) -> bool:
    """out = (sums as float64) / weights, rounded to out's dtype, in one pass; ``sums`` and ``out``
    contiguous of one shape, ``weights`` broadcastable to it. False (nothing done) when the
    dtypes are not compiled or the broadcast does not fit three dimensions."""
    if sums.dtype not in SUM_DTYPES or out.dtype not in VALUE_DTYPES or weights.dtype != np.float64:
        return False
    if not (sums.flags.c_contiguous and out.flags.c_contiguous) or sums.shape != out.shape:
        return False
    weights = np.ascontiguousarray(weights)
    geometry = _broadcast_geometry(out.shape, weights.shape)
    if geometry is None:
        return False
    block, steps = geometry
    if not _divide(sums.reshape(-1), weights.reshape(-1), 0, steps, out.reshape(-1), block):
        raise KernelBoundsError(f"weights {weights.shape} do not broadcast to {out.shape}")
    return True


@functools.lru_cache(maxsize=256)
def _broadcast_geometry(shape: tuple[int, ...], weights_shape: tuple[int, ...]) -> tuple[Steps, Steps] | None:
    """The three-dimensional block and the weights' element steps (inner step 0: one weight per
    row) for contiguous weights of ``weights_shape`` broadcast to contiguous ``shape``; None when
    they do not broadcast or need more dimensions. Cached: pieces repeat a few shapes."""
    lead = len(shape) - len(weights_shape)
    if lead < 0 or any(n not in (1, shape[d + lead]) for d, n in enumerate(weights_shape)):
        return None
    own = _element_steps(weights_shape)
    weight_steps = tuple(0 if d < lead or weights_shape[d - lead] == 1 else own[d - lead] for d in range(len(shape)))
    merged = _collapse(shape, _element_steps(shape), weight_steps)
    if merged is None:
        return None
    block, (sum_steps, steps) = merged
    if block[2] > 1 and (sum_steps[2] != 1 or steps[2] not in (0, 1)):
        return None
    if block[2] == 1:  # a single entry per row: read as broadcast
        steps = (steps[0], steps[1], 0)
    return block, steps
