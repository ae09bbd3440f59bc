"""Record-level privacy of a hospital's local DP-SGD: its parameters, their epsilon, the calibration.

One round of local DP-SGD is ``steps`` Poisson-subsampled Gaussian steps (rate q, noise
multiplier z, per-record clip C) on the hospital's own records; RDP adds up over steps and rounds,
so the project's accountant (``fedledger.dp.accountant``) gives epsilon for a round and for all
of a member's rounds from these parameters alone. The guarantee is about one record of that
hospital's data, against everyone who sees its update or any model trained from it.

The parameters travel as one short canonical text (``LocalDPRound.statement``) that fits the
ledger's access-record purpose, so the audit recomputes epsilon without opening any sealed file.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fedledger.dp.accountant import RoundPrivacy, epsilon, noise_multiplier_for
from fedledger.dp.errors import DPParameterError

STATEMENT_PREFIX = "local-dp/1 "
DEFAULT_DELTA = 1e-5
_KEYS = {"z": "noise_multiplier", "C": "clip", "q": "sample_rate", "T": "steps", "d": "delta"}


@dataclass(frozen=True)
class LocalDPRound:
    """One round of a member's DP-SGD: noise multiplier z, clip C, sample rate q, steps T, delta."""

    noise_multiplier: float
    clip: float
    sample_rate: float
    steps: int
    delta: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise DPParameterError(f"local DP noise multiplier must be positive, got {self.noise_multiplier!r}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise DPParameterError(f"local DP clip must be positive, got {self.clip!r}")
        if not 0 < self.sample_rate <= 1:
            raise DPParameterError(f"local DP sample rate must be in (0, 1], got {self.sample_rate!r}")
        if not 1 <= self.steps <= 10**7:
            raise DPParameterError(f"local DP steps must be in 1..10^7, got {self.steps!r}")
        if not 0 < self.delta < 1:
            raise DPParameterError(f"local DP delta must be in (0, 1), got {self.delta!r}")

    def steps_as_rounds(self) -> list[RoundPrivacy]:
        """The round as the accountant sees it: ``steps`` subsampled Gaussian mechanisms."""
        return [RoundPrivacy(self.clip, self.noise_multiplier, self.sample_rate, 1)] * self.steps

    def epsilon(self) -> float:
        """This round's own record-level epsilon at its delta."""
        return local_epsilon([self])

    def to_dict(self) -> dict[str, Any]:
        return {long: getattr(self, long) for long in _KEYS.values()}

    def statement(self) -> str:
        """The canonical one-line form recorded on the ledger (exact floats, fixed key order)."""
        short = {key: getattr(self, long) for key, long in _KEYS.items()}
        return STATEMENT_PREFIX + json.dumps(short, separators=(",", ":"))

    @classmethod
    def from_statement(cls, text: str) -> LocalDPRound:
        """Parse a ledger statement (untrusted: every field checked, nothing else allowed)."""
        if not text.startswith(STATEMENT_PREFIX):
            raise DPParameterError(f"not a local DP statement (it must start with {STATEMENT_PREFIX!r})")
        try:
            data = json.loads(text[len(STATEMENT_PREFIX) :])
        except json.JSONDecodeError as exc:
            raise DPParameterError(f"local DP statement is not JSON: {exc.msg}") from None
        if not isinstance(data, dict) or set(data) != set(_KEYS):
            raise DPParameterError(f"local DP statement must hold exactly the fields {sorted(_KEYS)}")
        steps = data["T"]
        if not isinstance(steps, int) or isinstance(steps, bool):
            raise DPParameterError("local DP steps must be an integer")
        numbers = [data[k] for k in ("z", "C", "q", "d")]
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in numbers):
            raise DPParameterError("local DP noise multiplier, clip, sample rate and delta must be numbers")
        z, clip, q, delta = (float(v) for v in numbers)
        return cls(z, clip, q, steps, delta)


def local_epsilon(rounds: Sequence[LocalDPRound]) -> float:
    """Cumulative record-level epsilon of ``rounds``, at the largest delta among them (0 for none)."""
    if not rounds:
        return 0.0
    steps = [step for r in rounds for step in r.steps_as_rounds()]
    return epsilon(steps, max(r.delta for r in rounds))


@functools.lru_cache(maxsize=64)  # a node asks every round with the same plan; each answer takes seconds
def calibrate_noise(target_epsilon: float, rounds: int, sample_rate: float, steps: int, delta: float) -> float:
    """The smallest noise multiplier (to 1e-3) with which ``rounds`` rounds of ``steps`` steps at
    ``sample_rate`` spend at most ``target_epsilon`` at ``delta``."""
    if rounds < 1 or steps < 1:
        raise DPParameterError(f"need at least one planned round and step, got {rounds} and {steps}")
    return noise_multiplier_for(target_epsilon, rounds * steps, delta, sample_rate)
