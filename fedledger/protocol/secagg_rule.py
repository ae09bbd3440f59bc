"""The secure-aggregation part of a round's rule: threshold t and the fixed-point encoding.

Why its own module: the rule is part of ``AggregationRule`` (every co-signer holds the manifest's
rule to the consortium's agreed one), while the round pipeline of the secure mode
(``secagg_round``) builds on ``round_check``; keeping the rule here avoids an import cycle.
The ring's width (32 or 64 bits) is not a rule parameter: it is chosen from the round's public
setup (participants, largest weight, value bound) and recorded in the setup, whose digest the
manifest carries. In a round with DP the value bound is the round's own (:func:`dp_value_bound`):
the noised global model drifts past any fixed bound, while a member's value there is base + a change
clipped to the plan's clip, so the base every party holds bounds it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fedledger.errors import FedLedgerError
from fedledger.secagg.ring import DEFAULT_FRAC_BITS, FLOAT32_EXACT_BITS

SECAGG_RULE_KEY = "secagg"
SECAGG_MODE = "secagg"
DEFAULT_VALUE_BOUND = 8.0  # |weight| of a trained sub-model entry; wider values are refused by the member
_FIELDS = {"mode", "threshold", "frac_bits", "value_bound"}
_SUM_ROUNDING = 1 + 2.0**-20  # base + clipped change in float32: far above its rounding (2**-24 relative)


class SecAggRuleError(FedLedgerError, ValueError):
    """A secure-aggregation rule that is malformed or outside what the protocol allows."""


@dataclass(frozen=True)
class SecAggRule:
    """t-of-n unmasking threshold, fractional bits f of the fixed-point scale 2**f, value bound."""

    threshold: int
    frac_bits: int = DEFAULT_FRAC_BITS
    value_bound: float = DEFAULT_VALUE_BOUND

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or self.threshold < 2:
            raise SecAggRuleError(f"secure aggregation threshold must be an integer >= 2, got {self.threshold!r}")
        if isinstance(self.frac_bits, bool) or not isinstance(self.frac_bits, int) or not 0 <= self.frac_bits <= 30:
            raise SecAggRuleError(f"fractional bits must be an integer in [0, 30], got {self.frac_bits!r}")
        bound = self.value_bound
        if isinstance(bound, bool) or not isinstance(bound, int | float) or not (math.isfinite(bound) and bound > 0):
            raise SecAggRuleError(f"value bound must be a positive number, got {bound!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": SECAGG_MODE,
            "threshold": self.threshold,
            "frac_bits": self.frac_bits,
            "value_bound": float(self.value_bound),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> SecAggRule:
        """Strict: exactly the fields :meth:`to_dict` writes, each of its JSON type."""
        if not isinstance(raw, Mapping) or set(raw) != _FIELDS:
            keys = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
            raise SecAggRuleError(f"secagg rule must have exactly the fields {sorted(_FIELDS)}, got {keys}")
        if raw["mode"] != SECAGG_MODE:
            raise SecAggRuleError(f"secagg rule mode must be {SECAGG_MODE!r}, got {raw['mode']!r}")
        if not isinstance(raw["value_bound"], float):
            raise SecAggRuleError("secagg rule value_bound must be a JSON number with a fraction")
        return cls(raw["threshold"], raw["frac_bits"], raw["value_bound"])


def default_threshold(members: int) -> int:
    """t = floor(n/2) + 1 (at least 2): two disjoint halves can never both unmask (docs/secagg.md)."""
    return max(2, members // 2 + 1)


def is_dp_value_bound(rule: SecAggRule, bound: float) -> bool:
    """Whether ``bound`` is one :func:`dp_value_bound` can give under ``rule``: the rule's own, or a power of
    two above it (what the audit, which cannot open the base model, holds a declared bound to)."""
    if bound == rule.value_bound:
        return True
    return bound > rule.value_bound and math.frexp(bound)[0] == 0.5


def dp_value_bound(rule: SecAggRule, base_state: Mapping[str, torch.Tensor], clip: float) -> float:
    """The value bound of a secure round with DP: the rule's, or if the base model and the clip need more,
    the smallest power of two >= (max|base| + clip), with room for float32 rounding.

    Why this bounds every honest value: a member encodes base + its change clipped to L2 norm ``clip``, so
    no entry leaves max|base| + clip. Aggregator, members and co-signers all compute it from the base they
    hold and the plan's clip; none takes another party's number for it."""
    peak = max((float(t.abs().max()) for t in base_state.values() if t.numel()), default=0.0)
    if not (math.isfinite(peak) and math.isfinite(clip) and clip > 0):
        raise SecAggRuleError(f"no value bound from a base model with largest entry {peak!r} and clip {clip!r}")
    need = (peak + clip) * _SUM_ROUNDING
    if need <= rule.value_bound:
        return rule.value_bound
    bound = 2.0 ** math.ceil(math.log2(need))
    limit = 2.0 ** (FLOAT32_EXACT_BITS - rule.frac_bits)
    if bound >= limit:
        raise SecAggRuleError(
            f"the base model's largest entry {peak:.6g} plus the clip {clip:g} needs value bound {bound:g}, "
            f"past what {rule.frac_bits} fractional bits encode exactly (below {limit:g})"
        )
    return bound
