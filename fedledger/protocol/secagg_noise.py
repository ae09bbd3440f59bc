"""Distributed DP noise in a secure round: the plan each member declares, its noise share, the ring's
headroom, and the DP parameters the round's record must carry.

Why the plan travels in each member's signed join: every member checks all joins before it deals its
shares, so all members size their noise with the same clip and multiplier (an aggregator cannot tell
members different ones), and co-signers and the audit recompute the record's DP parameters from the
published joins and setup alone. Shares are sized for the fewest survivors the threshold allows
(``fedledger.dp.distributed.sized_coverage``), so a round that completes carries at least the planned
noise and the record names that multiplier; the aggregate is never seen without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedledger.dp.accountant import RoundPrivacy
from fedledger.dp.distributed import (
    coverage_counts,
    distributed_round_privacy,
    noise_spread,
    noise_tail,
    planned_sensitivity,
    sized_coverage,
    skellam_share,
)
from fedledger.dp.errors import DPParameterError
from fedledger.errors import FedLedgerError
from fedledger.secagg.messages import RoundSetup

_FIELDS = {"clip", "noise_multiplier"}


class NoisePlanError(FedLedgerError, ValueError):
    """A noise plan is malformed, members disagree on it, or a record's DP parameters do not follow from it."""


@dataclass(frozen=True)
class NoisePlan:
    """What every member of a secure DP round applies: the L2 clip of its update's change and the target
    noise multiplier z its Skellam share is sized with."""

    clip: float
    noise_multiplier: float

    def __post_init__(self) -> None:
        for name in ("clip", "noise_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, float) or not (math.isfinite(value) and value > 0):
                raise NoisePlanError(f"noise plan {name} must be a positive finite number, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return {"clip": self.clip, "noise_multiplier": self.noise_multiplier}

    @classmethod
    def from_dict(cls, raw: Any) -> NoisePlan:
        """Strict: exactly the fields :meth:`to_dict` writes, each a JSON number with a fraction."""
        if not isinstance(raw, Mapping) or set(raw) != _FIELDS:
            raise NoisePlanError(f"a noise plan must have exactly the fields {sorted(_FIELDS)}")
        return cls(raw["clip"], raw["noise_multiplier"])

    @classmethod
    def of(cls, privacy: RoundPrivacy | None) -> NoisePlan | None:
        """The plan the aggregator announces for rounds with these planned parameters (None: no DP)."""
        return None if privacy is None else cls(float(privacy.clip), float(privacy.noise_multiplier))


def common_plan(plans: Iterable[NoisePlan | None]) -> NoisePlan | None:
    """The one plan every member declared (None: nobody adds noise); NoisePlanError when they differ."""
    distinct = set(plans)
    if len(distinct) > 1:
        raise NoisePlanError("the members' joins declare different noise plans")
    return next(iter(distinct), None)


def ring_noise_tail(
    plan: NoisePlan, frac_bits: int, weights: Mapping[int, int], positions: Mapping[int, np.ndarray], length: int,
    threshold: int,
) -> int:  # fmt: skip
    """Headroom the ring must keep for the summed shares when every member adds its own."""
    sized = sized_coverage(positions, length, threshold)
    spread = noise_spread(coverage_counts(positions.values(), length), sized)
    return noise_tail(plan.noise_multiplier, planned_sensitivity(plan.clip, frac_bits, weights, positions), spread)


def noise_share(setup: RoundSetup, member: int, plan: NoisePlan) -> np.ndarray:
    """``member``'s Skellam share (int64 ring units) at its positions, sized from the public setup."""
    sized = sized_coverage(setup.positions, setup.global_length, setup.threshold)
    sensitivity = planned_sensitivity(plan.clip, setup.ring.frac_bits, setup.weights, setup.positions)
    try:
        return skellam_share(setup.positions[member], sized, plan.noise_multiplier, sensitivity)
    except DPParameterError as exc:
        raise NoisePlanError(str(exc)) from None


def secure_round_privacy(setup: RoundSetup, plan: NoisePlan, survivors: Iterable[int]) -> RoundPrivacy:
    """The DP parameters the record of a round with these survivors must carry (public data only)."""
    try:
        return distributed_round_privacy(
            plan.clip, plan.noise_multiplier, setup.ring.frac_bits, setup.weights, setup.positions, survivors,
            setup.global_length, setup.threshold,
        )  # fmt: skip
    except DPParameterError as exc:
        raise NoisePlanError(str(exc)) from None


def check_record_privacy(
    claimed: RoundPrivacy | None, setup: RoundSetup, plan: NoisePlan | None, survivors: Iterable[int]
) -> None:
    """NoisePlanError unless the rule's DP parameters are exactly what the joins' plan and the setup imply."""
    if plan is None:
        if claimed is not None:
            raise NoisePlanError("the rule names DP parameters, but no member's join declares a noise plan")
        return
    if claimed is None:
        raise NoisePlanError("the members added noise shares, but the rule names no DP parameters")
    expected = secure_round_privacy(setup, plan, survivors)
    if claimed != expected:
        raise NoisePlanError(
            f"the rule's DP parameters {claimed.to_dict()} are not what the joins and setup imply: {expected.to_dict()}"
        )
