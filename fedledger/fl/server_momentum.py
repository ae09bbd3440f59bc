"""Server momentum (FedAvgM) on the aligned update, recomputable from the ledger alone.

With server learning rate 1, FedAvgM's buffer after round t-1 is exactly G(t-1) - G(t-2), the
difference of the last two global models, both on the ledger. So the new model

    G(t) = A(t) + beta * (G(t-1) - G(t-2))       (A(t): the aligned mean of round t's updates)

needs no hidden server state: any node holding the two previous global models recomputes it.
Coverage-aware: an entry no update covered this round keeps its value (its momentum stops, as
its pseudo-gradient is unknown). The combination uses the exact fixed-point sums of
:mod:`fedledger.fl.exact_sum` with beta as a small fraction p/q, so the result is bit-identical
on every CPU: G(t) = (q·A + p·G(t-1) - p·G(t-2)) / q per covered entry, one rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction

import numpy as np
import torch

from fedledger.fl.aggregation import (
    AggregationError,
    AlignmentAggregation,
    ClientUpdate,
    StreamingAccumulator,
    UpdateCheck,
)
from fedledger.fl.exact_sum import ExactSum, FixedPointRangeError, range_exponent, rows_of
from fedledger.fl.submodel import advanced_index

MAX_DENOMINATOR = 1000  # beta is taken as the nearest fraction p/q with q <= 1000 (0.9 -> 9/10)


def momentum_fraction(beta: float) -> Fraction:
    """beta as the exact fraction every node uses; refuses values outside [0, 1)."""
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"server momentum must be in [0, 1), got {beta!r}")
    return Fraction(beta).limit_denominator(MAX_DENOMINATOR)


class ServerMomentumAlignment(AlignmentAggregation):
    """Alignment, then a heavy-ball step along the previous round's global change (see module)."""

    name = "alignment_momentum"

    def __init__(
        self, beta: float, before_previous: Mapping[str, torch.Tensor] | None, check: UpdateCheck | None = None
    ) -> None:
        """``before_previous``: the global model two rounds back, G(t-2); None in the first round."""
        super().__init__(check)
        self.fraction = momentum_fraction(beta)
        self.before_previous = before_previous

    def _finish(self, global_state: Mapping[str, torch.Tensor], acc: StreamingAccumulator) -> dict[str, torch.Tensor]:
        covered = {name: acc.entry_weights(name) > 0 for name in global_state}
        return with_momentum(acc.result(), global_state, self.before_previous, self.fraction, covered)


class MomentumAfter(AlignmentAggregation):
    """Another aligning strategy (central DP's noised alignment), then the momentum step on what it
    released: momentum is post-processing, so it spends no privacy. Coverage is read from the index
    maps of the updates the strategy took, the entries :class:`ServerMomentumAlignment` finds covered."""

    def __init__(
        self, inner: AlignmentAggregation, beta: float, before_previous: Mapping[str, torch.Tensor] | None
    ) -> None:
        super().__init__()
        self.inner = inner
        self.fraction = momentum_fraction(beta)
        self.before_previous = before_previous

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Iterable[ClientUpdate]
    ) -> dict[str, torch.Tensor]:
        covered = {name: torch.zeros(tuple(t.shape), dtype=torch.bool) for name, t in global_state.items()}

        def marking() -> Iterator[ClientUpdate]:
            for update in updates:
                yield update
                for name, dims in update.index_map.indices.items():
                    covered[name][advanced_index(dims, tuple(covered[name].shape))] = True

        state = self.inner.aggregate(global_state, marking())
        return with_momentum(state, global_state, self.before_previous, self.fraction, covered)


def with_momentum(
    new_state: Mapping[str, torch.Tensor],
    previous: Mapping[str, torch.Tensor],
    before_previous: Mapping[str, torch.Tensor] | None,
    fraction: Fraction,
    covered: Mapping[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The momentum step on a round's result (aligned, or noised, or unmasked: any post-processing
    comes first), ``covered`` per tensor a boolean mask of the entries the round's updates covered.
    Unchanged when there is no history yet (``before_previous`` None) or beta is 0."""
    if before_previous is None or fraction == 0:
        return dict(new_state)
    missing = sorted(set(previous) - set(before_previous))
    if missing:
        raise AggregationError(f"server momentum: the model two rounds back lacks tensor {missing[0]}")
    return {
        name: momentum_step(new_state[name], value, before_previous[name], fraction, covered[name])
        for name, value in previous.items()
    }


def momentum_step(
    aligned: torch.Tensor, previous: torch.Tensor, before: torch.Tensor, fraction: Fraction, covered: torch.Tensor
) -> torch.Tensor:
    """(q·aligned + p·previous − p·before) / q where ``covered``, ``previous`` elsewhere; exact sums."""
    if before.shape != previous.shape:
        raise AggregationError(f"server momentum: the model two rounds back has shape {tuple(before.shape)}")
    p, q = fraction.numerator, fraction.denominator
    total = ExactSum(tuple(previous.shape), range_exponent(previous))
    total.admit(q + 2 * p)
    whole = tuple(slice(None) for _ in previous.shape)
    try:
        for values, weight in ((aligned, q), (previous, p), (before, -p)):
            total.add_block(values.detach().contiguous().numpy(), weight, whole)
    except FixedPointRangeError as exc:
        raise AggregationError(f"server momentum: {exc}") from None
    weights = np.where(covered.numpy(), float(q) * total.unit, 0.0)  # mean() divides by weight * unit
    return total.mean(rows_of(weights), previous.detach(), bool(covered.all())).contiguous()
