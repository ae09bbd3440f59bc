"""Byzantine-robust aggregation: per global entry, an order statistic over the updates covering it.

Why: alignment's weighted mean lets one member move any entry as far as it likes (scaled or
sign-flipped updates). A coordinate-wise trimmed mean drops the ``trim_fraction`` largest and
smallest values of each entry before averaging; the median keeps only the middle one or two.
Both are unweighted (a claimed sample count buys a poisoner nothing) and exact: sorting compares
values without arithmetic, and the kept values are summed in fixed point
(:mod:`fedledger.fl.exact_sum`), so every node recomputes the result bit for bit. Entries no
update covers keep their previous value, as in alignment. Unlike alignment this holds every
update in memory at once (order statistics need all values of an entry).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch

from fedledger.fl.aggregation import AlignmentAggregation, ClientUpdate, UpdateCheck, check_update_fits
from fedledger.fl.exact_sum import ExactSum, range_exponent, rows_of
from fedledger.fl.submodel import advanced_index

ROBUST_RULES = ("trimmed_mean", "median")
DEFAULT_TRIM_FRACTION = 0.2


class CoordinateRobustAggregation(AlignmentAggregation):
    """``trimmed_mean`` (drop floor(trim_fraction * c) values at each end of an entry covered by
    c updates) or ``median`` (the middle value, or the mean of the middle two)."""

    def __init__(self, rule: str, trim_fraction: float = DEFAULT_TRIM_FRACTION, check: UpdateCheck | None = None):
        if rule not in ROBUST_RULES:
            raise ValueError(f"robust rule must be one of {ROBUST_RULES}, got {rule!r}")
        if not 0.0 <= trim_fraction < 0.5:
            raise ValueError(f"trim fraction must be in [0, 0.5), got {trim_fraction}")
        super().__init__(check)
        self.name = rule
        self.trim_fraction = trim_fraction

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Iterable[ClientUpdate]
    ) -> dict[str, torch.Tensor]:
        accepted: list[ClientUpdate] = []
        sums = {name: ExactSum(tuple(t.shape), range_exponent(t)) for name, t in global_state.items()}
        for update in updates:
            update = self._accept(update)
            check_update_fits(update, sums)
            accepted.append(update)
        if not accepted:
            return {n: t.clone() for n, t in global_state.items()}
        return {
            name: self._entry_statistic(name, previous, accepted, sums[name]) for name, previous in global_state.items()
        }

    def _entry_statistic(
        self, name: str, previous: torch.Tensor, updates: list[ClientUpdate], acc: ExactSum
    ) -> torch.Tensor:
        shape = tuple(previous.shape)
        stack = torch.full((len(updates), *shape), math.inf, dtype=previous.dtype)
        for row, update in enumerate(updates):
            stack[row][advanced_index(update.index_map.indices[name], shape)] = update.state[name]
        covered = torch.isfinite(stack)
        count = covered.sum(dim=0)
        ordered = torch.sort(stack, dim=0).values  # uncovered (+inf) sort last; ties are equal values
        if self.name == "median":
            trim = torch.div(count - 1, 2, rounding_mode="floor").clamp_min(0)
        else:
            trim = torch.floor(count.to(torch.float64) * self.trim_fraction).to(torch.int64)
        rank = torch.arange(len(updates)).reshape(-1, *([1] * len(shape)))
        keep = (rank >= trim) & (rank < count - trim)
        acc.add_stack(ordered, keep)
        kept = (count - 2 * trim).clamp_min(0).to(torch.float64)
        return acc.mean(rows_of(kept.numpy() * acc.unit), previous.detach()).contiguous()
