"""Aggregation rules by name: the one parameter (``aggregation_rule``) every layer passes along.

The experiment, the CLI and a consortium's round parameters name the rule with the same string,
so a node recomputing the global model builds exactly the aggregator's strategy.
"""

from __future__ import annotations

from fedledger.fl.aggregation import AlignmentAggregation, UpdateCheck
from fedledger.fl.robust import DEFAULT_TRIM_FRACTION, ROBUST_RULES, CoordinateRobustAggregation

DEFAULT_RULE = "alignment"
AGGREGATION_RULES = (DEFAULT_RULE, *ROBUST_RULES)


def aggregation_for(
    aggregation_rule: str = DEFAULT_RULE, check: UpdateCheck | None = None, trim_fraction: float = DEFAULT_TRIM_FRACTION
) -> AlignmentAggregation:
    """The strategy named ``aggregation_rule`` (``alignment``, ``trimmed_mean`` or ``median``)."""
    if aggregation_rule == DEFAULT_RULE:
        return AlignmentAggregation(check)
    if aggregation_rule in ROBUST_RULES:
        return CoordinateRobustAggregation(aggregation_rule, trim_fraction, check)
    raise ValueError(f"aggregation rule must be one of {AGGREGATION_RULES}, got {aggregation_rule!r}")
