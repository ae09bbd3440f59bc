"""Alignment aggregation (and plain FedAvg as its full-width special case), Flower-style strategies.

Each global entry becomes the sample-weighted mean over the sub-models that cover it; entries
no sub-model covers keep their previous value. Sums are exact fixed-point integers, so the result is the same bit
for bit on every CPU and in every update order. Accumulation streams: updates arrive one at a
time (e.g. loaded lazily from files), each is added into one weighted-sum buffer of global size,
then dropped, so memory is one global model, one buffer and one update. Work per update is a
handful of slice additions per tensor (contiguous runs of the mapping), never a Python loop
over entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from fedledger.errors import FedLedgerError
from fedledger.fl.exact_sum import MAX_TOTAL_WEIGHT, ExactSum, range_exponent
from fedledger.fl.submodel import IndexMap, advanced_index, full_index_map, iter_blocks


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


def check_update_fits(update: ClientUpdate, sums: Mapping[str, ExactSum]) -> None:
    """The update's tensors match its index map and the global model, and fit the exact sums' range."""
    who = update.institution
    if not isinstance(update.num_samples, int) or update.num_samples <= 0:
        raise AggregationError(f"institution {who}: sample count must be a positive integer")
    for name in update.index_map.indices:
        if name not in sums:
            raise AggregationError(f"institution {who}, tensor {name}: not in the global model")
        value = update.state.get(name)
        shape = tuple(sums[name].total.shape)
        if (
            value is None
            or tuple(value.shape) != update.index_map.sub_shape(name)
            or shape != tuple(update.index_map.global_shapes[name])
        ):
            raise AggregationError(f"institution {who}, tensor {name}: does not match its index map")
        problem = sums[name].out_of_range(value)
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

    def add(self, update: ClientUpdate) -> None:
        """Accumulate one update; it is checked fully first, so a bad update changes nothing."""
        check_update_fits(update, self._sums)
        if self.total_samples + update.num_samples > MAX_TOTAL_WEIGHT:
            raise AggregationError(
                f"institution {update.institution}: sample counts of the round exceed {MAX_TOTAL_WEIGHT}"
            )
        weight = update.num_samples
        for name, dims in update.index_map.indices.items():
            acc = self._sums[name]
            fixed = acc.fixed(update.state[name], weight)
            total = acc.total.numpy()
            shape = tuple(total.shape)
            blocks = iter_blocks(dims, shape)
            if blocks is None:  # scattered mapping: one advanced-index accumulate per tensor
                acc.total.index_put_(advanced_index(dims, shape), torch.from_numpy(fixed), accumulate=True)
            else:
                for g, s in blocks:
                    np.add(total[g], fixed[s], out=total[g])
            self._factors[name].append((weight, dims))
        self.count += 1
        self.total_samples += update.num_samples

    def _weights(self, name: str) -> torch.Tensor:
        """Weight per entry (broadcastable to the tensor, exact integers; 0 where nobody covers it)."""
        factors = self._factors[name]
        shape = tuple(self._global[name].shape)
        selected = [d for d in range(len(shape)) if any(dims[d] is not None for _, dims in factors)]
        # integer sample counts below 2**53 (float64) or 2**24 (float32) sum exactly in any order
        exact32 = sum(w for w, _ in factors) < 2**24
        wdtype = torch.float32 if exact32 else torch.float64
        weights = torch.tensor([float(w) for w, _ in factors], dtype=wdtype)
        if not selected:
            return weights.sum().reshape([1] * len(shape))
        indicators = []
        for d in selected:
            m = torch.zeros(len(factors), shape[d], dtype=wdtype)
            for u, (_, dims) in enumerate(factors):
                if dims[d] is None:
                    m[u] = 1.0
                else:
                    m[u, dims[d]] = 1.0
            indicators.append(m)
        if len(indicators) == 1:
            dense = weights @ indicators[0]
        elif len(indicators) == 2:  # the usual case (weights of linear / conv layers): one matmul
            dense = (indicators[0] * weights[:, None]).T @ indicators[1]
        else:
            letters = "abcdefghijklmnopqrstuvwxyz"[: len(selected)]
            spec = "u," + ",".join(f"u{c}" for c in letters) + "->" + letters
            dense = torch.einsum(spec, weights, *indicators)  # sum_u n_u * outer(indicators_u)
        view = [shape[d] if d in selected else 1 for d in range(len(shape))]
        return dense.reshape(view)

    def result(self) -> dict[str, torch.Tensor]:
        """The aligned global state: weighted mean where covered, previous value elsewhere."""
        out: dict[str, torch.Tensor] = {}
        for name, previous in self._global.items():
            if not self._factors[name]:
                out[name] = previous.clone()
                continue
            out[name] = self._sums[name].mean(self._weights(name), previous.detach()).contiguous()
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


def full_width_update(
    institution: str, state: dict[str, torch.Tensor], num_samples: int, base_digest: bytes | None = None
) -> ClientUpdate:
    """Wrap a full-width state as an update (FedAvg participants)."""
    return ClientUpdate(institution, state, full_index_map(state), num_samples, base_digest)
