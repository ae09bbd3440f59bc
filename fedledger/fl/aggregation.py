"""Alignment aggregation (and plain FedAvg as its full-width special case), Flower-style strategies.

Each global entry becomes the sample-weighted mean over the sub-models that cover it; entries
no sub-model covers keep their previous value. Accumulation streams: updates arrive one at a
time (e.g. loaded lazily from files), each is added into two accumulators of global size (the
weighted sum and the weight), then dropped. Work per update is a handful of slice additions
per tensor (contiguous runs of the mapping), never a Python loop over entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

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


class AggregationError(ValueError):
    """An update does not fit the global model (should have been caught by validation)."""


class StreamingAccumulator:
    """Weighted sum and weight per global entry, fed one update at a time."""

    def __init__(self, global_state: Mapping[str, torch.Tensor], dtype: torch.dtype | None = None) -> None:
        self._global = global_state
        self._sums = {n: torch.zeros_like(t, dtype=dtype or t.dtype) for n, t in global_state.items()}
        self._weights = {n: torch.zeros_like(t, dtype=dtype or t.dtype) for n, t in global_state.items()}
        self.count = 0
        self.total_samples = 0

    def add(self, update: ClientUpdate) -> None:
        if update.num_samples <= 0:
            raise AggregationError(f"institution {update.institution}: sample count must be positive")
        weight = float(update.num_samples)
        for name, dims in update.index_map.indices.items():
            if name not in self._sums:
                raise AggregationError(f"institution {update.institution}, tensor {name}: not in the global model")
            acc, wacc = self._sums[name], self._weights[name]
            value = update.state[name]
            shape = tuple(acc.shape)
            if tuple(value.shape) != update.index_map.sub_shape(name) or shape != tuple(
                update.index_map.global_shapes[name]
            ):
                raise AggregationError(
                    f"institution {update.institution}, tensor {name}: shape {tuple(value.shape)} does not "
                    f"match its index map"
                )
            blocks = iter_blocks(dims, shape)
            if blocks is None:  # scattered mapping: one advanced-index accumulate per tensor
                index = advanced_index(dims, shape)
                acc.index_put_(index, value.to(acc.dtype) * weight, accumulate=True)
                wacc.index_put_(index, torch.full_like(value, weight, dtype=wacc.dtype), accumulate=True)
                continue
            for g, s in blocks:
                acc[g].add_(value[s], alpha=weight)
                wacc[g].add_(weight)
        self.count += 1
        self.total_samples += update.num_samples

    def result(self) -> dict[str, torch.Tensor]:
        """The aligned global state: weighted mean where covered, previous value elsewhere."""
        out: dict[str, torch.Tensor] = {}
        for name, previous in self._global.items():
            acc, wacc = self._sums[name], self._weights[name]
            covered = wacc > 0
            acc.div_(wacc.clamp_min_(torch.finfo(wacc.dtype).tiny))
            out[name] = torch.where(covered, acc.to(previous.dtype), previous).contiguous()
        # the accumulators now hold means; drop them so result() cannot be misused twice
        self._sums, self._weights = {}, {}
        return out


class AlignmentAggregation:
    """Heterogeneous aggregation: align sub-models of any widths into the full-width global model."""

    name = "alignment"

    def __init__(self, check: UpdateCheck | None = None, accumulate_dtype: torch.dtype | None = None) -> None:
        """``check`` (e.g. an :class:`UpdateValidator`) sees every update before it is used and may
        return a modified one (norm clipping) or raise ``UpdateRejected``."""
        self.check = check
        self.accumulate_dtype = accumulate_dtype

    def _accept(self, update: ClientUpdate) -> ClientUpdate:
        return self.check(update) if self.check is not None else update

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Iterable[ClientUpdate]
    ) -> dict[str, torch.Tensor]:
        """New global state from ``updates`` (an iterable: pass a generator to stream from disk)."""
        acc = StreamingAccumulator(global_state, self.accumulate_dtype)
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
