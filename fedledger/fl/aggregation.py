"""Alignment aggregation (and plain FedAvg as its full-width special case), Flower-style strategies.

Each global entry becomes the sample-weighted mean over the sub-models that cover it; entries
no sub-model covers keep their previous value. Sums are exact fixed-point integers, so the result is the same bit
for bit on every CPU and in every update order. Accumulation streams: updates arrive one at a
time (e.g. loaded lazily from files); each is checked at once and kept by reference until the
mean, or until BATCH_BYTES of them wait, then they are folded into the sums piece by piece (see
:mod:`fedledger.fl.exact_sum`), so memory is one global model, the waiting updates (at most
BATCH_BYTES) and, only for rounds larger than that, one set of full-size sums. Work per update is
a handful of slice additions per tensor and piece (contiguous runs of the mapping), never a
Python loop over entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fedledger.errors import FedLedgerError
from fedledger.fl.exact_sum import (
    BATCH_BYTES,
    MAX_TOTAL_WEIGHT,
    ExactSum,
    Rows,
    WeightRows,
    range_exponent,
    rows_of,
)
from fedledger.fl.submodel import DimIndex, IndexMap, advanced_index, full_index_map, iter_blocks


@dataclass
class ClientUpdate:
    """One institution's trained sub-model as the aggregator sees it.

    ``base_digest`` is the SM3 digest of the global model file the update was trained from
    (None when the caller has already checked it).
    """

    institution: str
    state: dict[str, torch.Tensor]
    index_map: IndexMap
    num_samples: int
    base_digest: bytes | None = None

    @property
    def width_rate(self) -> float:
        return self.index_map.width_rate


UpdateCheck = Callable[[ClientUpdate], ClientUpdate]


class AggregationError(FedLedgerError, ValueError):
    """An update does not fit the global model (should have been caught by validation)."""


def check_update_fits(update: ClientUpdate, sums: Mapping[str, ExactSum], check_range: bool = True) -> None:
    """The update's tensors match its index map and the global model, and (``check_range``) fit
    the exact sums' range."""
    who = update.institution
    if not isinstance(update.num_samples, int) or update.num_samples <= 0:
        raise AggregationError(f"institution {who}: sample count must be a positive integer")
    for name in update.index_map.indices:
        if name not in sums:
            raise AggregationError(f"institution {who}, tensor {name}: not in the global model")
        value = update.state.get(name)
        shape = sums[name].shape
        if (
            value is None
            or tuple(value.shape) != update.index_map.sub_shape(name)
            or shape != tuple(update.index_map.global_shapes[name])
        ):
            raise AggregationError(f"institution {who}, tensor {name}: does not match its index map")
        problem = sums[name].out_of_range(value) if check_range else None
        if problem:
            raise AggregationError(f"institution {who}, tensor {name}: {problem}")


class StreamingAccumulator:
    """Exact weighted sums per global entry, fed one update at a time; weights kept in factored form.

    Sums are fixed-point integers (:mod:`fedledger.fl.exact_sum`): the result does not depend on
    the order of the updates nor on the CPU's SIMD kernels, so every node recomputes it bit for bit.
    The weight of entry (i, j, ...) is sum_u n_u * [i in I_u] * [j in J_u] * ..., a sum of
    outer products of per-dimension indicator vectors. Keeping only (n_u, I_u, J_u, ...) per
    update (a few KB) and materialising the weights once at the end, over the selected
    dimensions only and broadcast over the rest, costs one small matmul instead of a second
    global-size accumulator touched by every update.
    """

    def __init__(self, global_state: Mapping[str, torch.Tensor]) -> None:
        self._global = global_state
        self._sums = {n: ExactSum(tuple(t.shape), range_exponent(t)) for n, t in global_state.items()}
        self._factors: dict[str, list[tuple[int, tuple[torch.Tensor | None, ...]]]] = {n: [] for n in global_state}
        self.count = 0
        self.total_samples = 0
        self._pending_bytes = 0

    def add(self, update: ClientUpdate) -> None:
        """Accumulate one update; a bad update changes nothing.

        Shapes, the sample count and every value's range are checked first. The update's blocks
        are then kept by reference and folded into the sums together with the other pending
        updates (at :meth:`result`, or once they hold BATCH_BYTES): each piece of the sums is
        loaded once per batch, not once per update. Do not modify an added update's tensors.
        """
        check_update_fits(update, self._sums)
        if self.total_samples + update.num_samples > MAX_TOTAL_WEIGHT:
            raise AggregationError(
                f"institution {update.institution}: sample counts of the round exceed {MAX_TOTAL_WEIGHT}"
            )
        weight = update.num_samples
        for name, dims in update.index_map.indices.items():
            _add_tensor(self._sums[name], update.state[name], dims, weight)
            self._factors[name].append((weight, dims))
            self._pending_bytes += update.state[name].nbytes
        self.count += 1
        self.total_samples += update.num_samples
        if self._pending_bytes > BATCH_BYTES:
            for acc in self._sums.values():
                acc.fold()
            self._pending_bytes = 0

    def _weights(self, name: str, scale: float = 1.0) -> WeightRows:
        """Weights times ``scale`` (a power of two) per entry, row piece by row piece (broadcastable;
        exact, 0 where nobody covers it).

        For selected dimensions d0 < d1 < ...: weight = sum_u n_u [i0 in I_u] * outer(rest_u), a
        matmul of (n_u * indicator of d0) with the outer product of the other indicators. float64
        sums of integers (times one power of two) below 2**53 are exact in any order, so any BLAS
        kernel gives the same.
        """
        factors = self._factors[name]
        shape = tuple(self._global[name].shape)
        selected = [d for d in range(len(shape)) if any(dims[d] is not None for _, dims in factors)]
        weights = np.array([float(w) * scale for w, _ in factors])
        view = [shape[d] if d in selected else 1 for d in range(len(shape))]
        if not selected:
            return rows_of(np.full(view, weights.sum()))
        first, *rest = (_indicator(factors, d, shape[d]) for d in selected)
        lead = first * weights[:, None]
        other = np.ones((len(factors), 1))
        for m in rest:
            other = (other[:, :, None] * m[:, None, :]).reshape(len(factors), -1)
        if selected[0] != 0:  # constant along the leading axis: one small dense array
            return rows_of((lead.T @ other).reshape(view))
        return _LeadingAxisWeights(lead, other, tuple(view[1:]))

    def entry_weights(self, name: str) -> torch.Tensor:
        """Public weight per entry of tensor ``name`` so far (what central DP divides its noise by);
        call before :meth:`result`, which spends the accumulator."""
        shape = tuple(self._global[name].shape)
        return torch.from_numpy(np.broadcast_to(self._weights(name)(slice(None)), shape).copy())

    def result(self) -> dict[str, torch.Tensor]:
        """The aligned global state: weighted mean where covered, previous value elsewhere."""
        out: dict[str, torch.Tensor] = {}
        for name, previous in self._global.items():
            if not self._factors[name]:
                self._sums[name].release()
                out[name] = previous.clone()
                continue
            # a full-width update covers every entry: no need to look for uncovered ones
            covered = any(all(d is None for d in dims) for _, dims in self._factors[name])
            acc = self._sums[name]
            out[name] = acc.mean(self._weights(name, acc.unit), previous.detach(), covered).contiguous()
        # the accumulators are spent; drop them so result() cannot be misused twice
        self._sums, self._factors = {}, {}
        return out


class AlignmentAggregation:
    """Heterogeneous aggregation: align sub-models of any widths into the full-width global model."""

    name = "alignment"

    def __init__(self, check: UpdateCheck | None = None) -> None:
        """``check`` (e.g. an :class:`UpdateValidator`) sees every update before it is used and may
        return a modified one (norm clipping) or raise ``UpdateRejected``."""
        self.check = check

    def _accept(self, update: ClientUpdate) -> ClientUpdate:
        return self.check(update) if self.check is not None else update

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Iterable[ClientUpdate]
    ) -> dict[str, torch.Tensor]:
        """New global state from ``updates`` (an iterable: pass a generator to stream from disk)."""
        acc = StreamingAccumulator(global_state)
        for update in updates:
            acc.add(self._accept(update))
        if acc.count == 0:
            return {n: t.clone() for n, t in global_state.items()}
        return self._finish(global_state, acc)

    def _finish(self, global_state: Mapping[str, torch.Tensor], acc: StreamingAccumulator) -> dict[str, torch.Tensor]:
        """The new state from the round's sums (a subclass may use more than the mean, e.g. coverage)."""
        return acc.result()


class FedAvg(AlignmentAggregation):
    """Plain FedAvg: every update must be full width; the result is the sample-weighted mean."""

    name = "fedavg"

    def _accept(self, update: ClientUpdate) -> ClientUpdate:
        if not update.index_map.is_full():
            partial = next(n for n, dims in update.index_map.indices.items() if any(i is not None for i in dims))
            raise AggregationError(
                f"institution {update.institution}, tensor {partial}: FedAvg needs full-width updates "
                f"(width rate {update.width_rate})"
            )
        return super()._accept(update)


def _add_tensor(acc: ExactSum, value: torch.Tensor, dims: tuple[DimIndex, ...], weight: int) -> None:
    """Add one checked tensor of an update into its sum: slice blocks deferred, a scattered map at once."""
    acc.admit(weight)
    blocks = iter_blocks(dims, acc.shape)
    if blocks is None:  # scattered mapping: one advanced-index accumulate per tensor
        acc.scatter(value, weight, advanced_index(dims, acc.shape))
    else:
        acc.defer(value.detach().numpy(), weight, list(blocks))


class _LeadingAxisWeights:
    """Weights of row pieces when the leading axis is selected. Rows covered by the same updates
    (a few long runs for static and rolling maps) share one row of weights, computed once and
    broadcast, so most pieces need no dense weight array at all. Sums of products of integers
    (times one power of two) in float64 without BLAS: exact, and no BLAS threads on a busy machine."""

    def __init__(self, lead: np.ndarray, other: np.ndarray, tail: tuple[int, ...]) -> None:
        self._lead, self._other, self._tail = lead, other, tail
        changes = np.flatnonzero(np.any(lead[:, 1:] != lead[:, :-1], axis=0)) + 1  # first rows of runs
        self._run_of_row = np.searchsorted(changes, np.arange(lead.shape[1]), side="right")
        self._run_starts = [0, *changes.tolist()]
        self._table: dict[int, np.ndarray] = {}

    def _run_weights(self, run: int) -> np.ndarray:
        if run not in self._table:
            self._table[run] = (self._lead[:, self._run_starts[run], None] * self._other).sum(axis=0)
        return self._table[run]

    def __call__(self, rows: Rows) -> np.ndarray:
        start, stop, _ = rows.indices(self._lead.shape[1])
        runs = self._run_of_row[start:stop]
        if runs[0] == runs[-1]:  # one run: one row of weights
            return self._run_weights(int(runs[0])).reshape((1, *self._tail))
        table = np.stack([self._run_weights(int(r)) for r in range(int(runs[0]), int(runs[-1]) + 1)])
        return table[runs - runs[0]].reshape((-1, *self._tail))


def _indicator(factors: list[tuple[int, tuple[torch.Tensor | None, ...]]], d: int, size: int) -> np.ndarray:
    """Row u: 1.0 at the positions of dimension ``d`` that update u covers."""
    m = np.zeros((len(factors), size))
    for u, (_, dims) in enumerate(factors):
        index = dims[d]
        if index is None:
            m[u] = 1.0
        else:
            m[u, index.numpy()] = 1.0
    return m


def full_width_update(
    institution: str, state: dict[str, torch.Tensor], num_samples: int, base_digest: bytes | None = None
) -> ClientUpdate:
    """Wrap a full-width state as an update (FedAvg participants)."""
    return ClientUpdate(institution, state, full_index_map(state), num_samples, base_digest)
