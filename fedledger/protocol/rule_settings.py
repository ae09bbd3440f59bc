"""The consortium's aggregation terms as config fields, one definition for aggregator.toml and node.toml.

Why shared: the aggregator writes these terms into every round manifest and each node refuses a
manifest whose terms differ from its own config, so both files must spell them alike, with the
same names and defaults (the recommended method: rolling windows and server momentum 0.5).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, model_validator

from fedledger.fl import ValidationPolicy
from fedledger.fl.rules import AGGREGATION_RULES, DEFAULT_RULE, DEFAULT_SELECTION, server_momentum_for
from fedledger.protocol.round_check import AggregationRule


class RuleSettings(BaseModel):
    """``aggregation_rule``, ``selection`` and ``server_momentum``: every party's config must say the same."""

    aggregation_rule: str = Field(
        DEFAULT_RULE,
        pattern=f"^({'|'.join(AGGREGATION_RULES)})$",
        description="alignment (weighted mean), trimmed_mean or median; the round manifest names it and a node "
        "refuses a manifest naming another",
    )
    selection: Literal["rolling", "static", "random"] = Field(
        DEFAULT_SELECTION,
        description="which units each width trains: rolling windows (one unit further each round), static "
        "prefixes or seeded random units; every update's index map is held to it",
    )
    server_momentum: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="beta of the server momentum step on each round's result (a fraction p/q, q <= 1000); "
        "unset: 0.5 with alignment, 0 with the robust rules; 0: off",
    )

    @model_validator(mode="after")
    def _momentum_fits_the_rule(self) -> RuleSettings:
        server_momentum_for(self.aggregation_rule, self.server_momentum)  # ValueError names the conflict
        return self

    def effective_server_momentum(self) -> float:
        return server_momentum_for(self.aggregation_rule, self.server_momentum)

    def aggregation_terms(self, policy: ValidationPolicy) -> AggregationRule:
        """The rule these settings give a plain round (no DP, no secure aggregation)."""
        return AggregationRule(
            self.aggregation_rule,
            policy,
            selection=self.selection,
            server_momentum=self.effective_server_momentum(),
        )
