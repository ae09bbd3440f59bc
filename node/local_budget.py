"""A node's own record-level budget for local DP-SGD: calibrate, check, and never forget what was spent.

The hospital sets epsilon for ``rounds`` planned rounds (``node.toml`` ``local_dp_*``); each round's
noise multiplier is calibrated so that many rounds of its DP-SGD spend at most epsilon. Before a
round trains, its parameters are written (atomically, fsynced) to ``local-dp-spend.json`` in the
state folder: an update that leaves the node has always been counted first, and a crash at worst
counts a round that never left. A round that would take the spend past epsilon is refused, and
the refusal is kept in the same file for ``fedledger node status``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fedledger.dp.errors import DPError, DPParameterError
from fedledger.dp.local import DEFAULT_DELTA, LocalDPRound, calibrate_noise, local_epsilon
from fedledger.fileio import atomic_write_text
from fedledger.fl.dp_sgd import dp_sgd_plan

SPEND_FILE = "local-dp-spend.json"
_SLACK = 1e-9  # the calibrated plan spends the target up to float rounding


class LocalBudgetExhausted(DPError):
    """The next round's DP-SGD would take this node's record-level epsilon past its own budget."""


class LocalSpendUnreadable(DPError):
    """The spend file exists but cannot be read: training stops rather than forget what was spent."""


def _unreadable(path: Path, exc: Exception) -> LocalSpendUnreadable:
    return LocalSpendUnreadable(f"{path}: the local DP spend cannot be read ({exc}); restore it")


@dataclass(frozen=True)
class LocalDPPolicy:
    """The hospital's record-level target: ``epsilon`` at ``delta`` over ``rounds`` rounds, clip ``clip``."""

    epsilon: float
    delta: float = DEFAULT_DELTA
    clip: float = 1.0
    rounds: int = 50

    def __post_init__(self) -> None:
        if not (math.isfinite(self.epsilon) and self.epsilon > 0):
            raise DPParameterError(f"local DP epsilon must be a positive number, got {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise DPParameterError(f"local DP delta must be in (0, 1), got {self.delta!r}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise DPParameterError(f"local DP clip must be a positive number, got {self.clip!r}")
        if self.rounds < 1:
            raise DPParameterError(f"local DP needs at least one planned round, got {self.rounds!r}")

    def round_for(self, records: int, batch_size: int, epochs: int) -> LocalDPRound:
        """The DP-SGD round a node with ``records`` training records runs under this policy."""
        if self.delta >= 1 / records:
            raise DPParameterError(f"local DP delta {self.delta:g} must be below 1 / {records} training records")
        plan = dp_sgd_plan(records, batch_size, epochs)
        z = calibrate_noise(self.epsilon, self.rounds, plan.sample_rate, plan.steps, self.delta)
        return LocalDPRound(z, self.clip, plan.sample_rate, plan.steps, self.delta)


class LocalPrivacySpend:
    """What this node's DP-SGD has spent, per round, kept in ``state_dir / SPEND_FILE``."""

    def __init__(self, state_dir: Path, policy: LocalDPPolicy) -> None:
        self.path = state_dir / SPEND_FILE
        self.policy = policy

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"rounds": {}, "refused": None}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            rounds = {str(int(r)): LocalDPRound.from_statement(s).statement() for r, s in data["rounds"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, DPParameterError) as exc:
            raise _unreadable(self.path, exc) from None
        return {"rounds": rounds, "refused": data.get("refused")}

    def _save(self, data: dict[str, Any]) -> None:
        data = {**data, "epsilon": self.policy.epsilon, "delta": self.policy.delta}
        atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))

    def rounds(self) -> dict[int, LocalDPRound]:
        """Every round counted so far (round index -> its DP-SGD parameters)."""
        return {int(r): LocalDPRound.from_statement(s) for r, s in self._load()["rounds"].items()}

    def spent(self) -> float:
        """The record-level epsilon of every round counted so far, as the audit recomputes it."""
        return local_epsilon(list(self.rounds().values()))

    def refusal(self) -> str | None:
        """Why the last refused round was refused (None once a later round trained)."""
        refused = self._load()["refused"]
        return str(refused) if refused else None

    def reserve(self, round_index: int, planned: LocalDPRound) -> LocalDPRound:
        """Count ``planned`` for ``round_index`` on disk before it trains; LocalBudgetExhausted if it
        would overspend. A round counted before (a retrain after a crash, whose first update never
        left) is counted once, with the new parameters."""
        data = self._load()
        others = [LocalDPRound.from_statement(s) for r, s in data["rounds"].items() if int(r) != round_index]
        after = local_epsilon([*others, planned])
        if after > self.policy.epsilon * (1 + _SLACK):
            reason = (
                f"round {round_index} not trained: local DP-SGD would bring this node's record-level epsilon to "
                f"{after:.4g}, over its budget {self.policy.epsilon:g} (delta {self.policy.delta:g}; spent "
                f"{local_epsilon(others):.4g} in {len(others)} rounds)"
            )
            self._save({**data, "refused": reason})
            raise LocalBudgetExhausted(reason)
        data["rounds"][str(round_index)] = planned.statement()
        self._save({**data, "refused": None})
        return planned


def _given(**values: Any) -> dict[str, Any]:
    """The options a command line gave (None: not given). Tested with ``is None``, never ``or``: a bad
    0 must reach the policy's checks, not fall back to another value."""
    return {name: value for name, value in values.items() if value is not None}


def override_policy(policy: LocalDPPolicy | None, epsilon: float | None, rounds: int | None) -> LocalDPPolicy | None:
    """``policy`` with a command line's epsilon and planned rounds (either may be None: kept)."""
    given = _given(epsilon=epsilon, rounds=rounds)
    if not given:
        return policy
    if policy is None and epsilon is None:
        raise DPParameterError("--local-dp-rounds needs --local-dp-epsilon (or local_dp_epsilon in node.toml)")
    return replace(policy, **given) if policy is not None else LocalDPPolicy(**given)


def requested_policy(
    epsilon: float | None, delta: float | None, clip: float | None, rounds: int | None
) -> LocalDPPolicy | None:
    """The policy ``fedledger node init``'s options ask for (None: no local DP). Delta, clip or rounds
    without an epsilon would be written and then ignored (local DP stays off), so they are refused."""
    planning = _given(delta=delta, clip=clip, rounds=rounds)
    if epsilon is None:
        if planning:
            options = ", ".join(f"--local-dp-{name}" for name in planning)
            raise DPParameterError(f"{options} need --local-dp-epsilon: without it local DP-SGD is off")
        return None
    return LocalDPPolicy(epsilon, **planning)


def local_dp_status(state_dir: Path) -> str | None:
    """What ``fedledger node status`` says about local DP-SGD (None: this node never used it): the
    spend, the budget it was counted against and the last refusal, from the spend file alone."""
    path = state_dir / SPEND_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        policy = LocalDPPolicy(float(data["epsilon"]), float(data["delta"]))
    except (OSError, ValueError, KeyError, TypeError, DPParameterError) as exc:
        raise _unreadable(path, exc) from None
    spend = LocalPrivacySpend(state_dir, policy)
    line = (
        f"local DP-SGD: record-level epsilon {spend.spent():.4g} spent of {policy.epsilon:g} "
        f"(delta {policy.delta:g}) in {len(spend.rounds())} round(s)"
    )
    refusal = spend.refusal()
    return f"{line}\n  {refusal}" if refusal else line
