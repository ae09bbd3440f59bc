"""Aggregation rules by name: the one parameter (``aggregation_rule``) every layer passes along.

The experiment, the CLI and a consortium's round parameters name the rule with the same string,
so a node recomputing the global model builds exactly the aggregator's strategy. Alignment takes
one optional parameter, ``server_momentum`` (beta of FedAvgM on the aligned model, 0 = off): with
it the strategy also needs the global model two rounds back, which every node holds from the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import torch

from fedledger.fl.aggregation import AlignmentAggregation, UpdateCheck
from fedledger.fl.robust import DEFAULT_TRIM_FRACTION, ROBUST_RULES, CoordinateRobustAggregation
from fedledger.fl.server_momentum import ServerMomentumAlignment, momentum_fraction

DEFAULT_RULE = "alignment"
AGGREGATION_RULES = (DEFAULT_RULE, *ROBUST_RULES)
# The recommended method (docs/fl.md, "Methods tried", chosen on validation): rolling windows
# (FedRolex) with server momentum 0.5 on the aligned model; consortium rounds use it by default.
DEFAULT_SELECTION: Final = "rolling"
DEFAULT_SERVER_MOMENTUM = 0.5


def server_momentum_for(aggregation_rule: str, server_momentum: float | None) -> float:
    """The beta a consortium using ``aggregation_rule`` runs with: ``server_momentum`` as set, or
    when unset the recommended 0.5 for alignment and 0 for the robust rules (momentum is defined on
    the aligned mean only). ValueError for a beta outside [0, 1), not a fraction p/q with q <= 1000,
    or set with a robust rule."""
    if server_momentum is None:
        return DEFAULT_SERVER_MOMENTUM if aggregation_rule == DEFAULT_RULE else 0.0
    if float(momentum_fraction(server_momentum)) != server_momentum:
        raise ValueError(f"server momentum must be a fraction p/q with q <= 1000 (0.5, 0.9), got {server_momentum!r}")
    if server_momentum and aggregation_rule != DEFAULT_RULE:
        raise ValueError(
            f"server momentum applies to {DEFAULT_RULE!r} only: with {aggregation_rule!r} set server_momentum = 0"
        )
    return float(server_momentum)


def aggregation_for(
    aggregation_rule: str = DEFAULT_RULE,
    check: UpdateCheck | None = None,
    trim_fraction: float = DEFAULT_TRIM_FRACTION,
    *,
    server_momentum: float = 0.0,
    before_previous: Mapping[str, torch.Tensor] | None = None,
) -> AlignmentAggregation:
    """The strategy named ``aggregation_rule`` (``alignment``, ``trimmed_mean`` or ``median``).

    ``server_momentum`` > 0 (alignment only): :class:`ServerMomentumAlignment` with
    ``before_previous``, the global model two rounds back (None in the first round)."""
    if server_momentum and aggregation_rule != DEFAULT_RULE:
        raise ValueError(f"server momentum applies to {DEFAULT_RULE!r} only, not {aggregation_rule!r}")
    if aggregation_rule == DEFAULT_RULE:
        if server_momentum:
            return ServerMomentumAlignment(server_momentum, before_previous, check)
        return AlignmentAggregation(check)
    if aggregation_rule in ROBUST_RULES:
        return CoordinateRobustAggregation(aggregation_rule, trim_fraction, check)
    raise ValueError(f"aggregation rule must be one of {AGGREGATION_RULES}, got {aggregation_rule!r}")
