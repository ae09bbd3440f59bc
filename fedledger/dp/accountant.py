"""RDP accounting from the round parameters alone: epsilon per round, cumulative, and the budget.

Why from parameters alone: every round record carries (clip, noise multiplier, sampling rate,
participants, mechanism), so the audit recomputes epsilon from the ledger without any secret.

- ``gaussian`` (central DP, and the distributed case approximated as Gaussian): the RDP of the
  Poisson-subsampled Gaussian mechanism, from Opacus 1.6 (``compute_rdp``; Mironov et al. 2019).
- ``skellam`` (distributed noise in the ring): the Skellam mechanism's RDP (Agarwal, Kairouz and
  Liu, NeurIPS 2021): alpha / (2 z**2) + min(((2 alpha - 1) D2**2 + 6 D1) / (16 mu**2),
  3 D1 / (4 mu)) with mu = (z D2)**2 / 2 and D1 <= min(D2**2, sqrt(d) D2) for integer vectors;
  subsampled with the general upper bound of Zhu and Wang (ICML 2019, Thm. 6) at integer orders.

RDP adds up over rounds; (epsilon, delta) comes from Opacus's conversion (Balle et al. 2020).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from scipy.special import gammaln, logsumexp

from fedledger.dp.errors import BudgetExceeded, DPParameterError

ORDERS = tuple([1 + x / 10 for x in range(1, 100)] + list(range(11, 257)))
MECHANISMS = ("gaussian", "skellam")


@dataclass(frozen=True)
class RoundPrivacy:
    """What one round's record says about its noise; enough to recompute its epsilon.

    ``noise_multiplier`` z is the noise standard deviation over the L2 sensitivity (the
    realised one after dropouts); ``sample_rate`` the probability a member takes part;
    ``participants`` how many members' noise shares make the target (recorded for the audit).
    Skellam rounds also name the sensitivity in ring units and the model dimension.
    """

    clip: float
    noise_multiplier: float
    sample_rate: float
    participants: int
    mechanism: str = "gaussian"
    ring_sensitivity: float = 0.0
    dimension: int = 0

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise DPParameterError(f"mechanism must be one of {MECHANISMS}, got {self.mechanism!r}")
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise DPParameterError(f"clip must be a positive number, got {self.clip!r}")
        if not self.noise_multiplier > 0:
            raise DPParameterError(f"noise multiplier must be positive, got {self.noise_multiplier!r}")
        if not 0 < self.sample_rate <= 1:
            raise DPParameterError(f"sample rate must be in (0, 1], got {self.sample_rate!r}")
        if self.participants < 1:
            raise DPParameterError("participants must be at least 1")
        if self.mechanism == "skellam" and (self.ring_sensitivity < 1 or self.dimension < 1):
            raise DPParameterError("a Skellam round must give its ring sensitivity (>= 1) and dimension")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RoundPrivacy:
        """Parse a round record's DP parameters (untrusted: every field checked)."""
        try:
            return cls(
                clip=float(data["clip"]),
                noise_multiplier=float(data["noise_multiplier"]),
                sample_rate=float(data["sample_rate"]),
                participants=int(data["participants"]),
                mechanism=str(data.get("mechanism", "gaussian")),
                ring_sensitivity=float(data.get("ring_sensitivity", 0.0)),
                dimension=int(data.get("dimension", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, DPParameterError):
                raise
            raise DPParameterError(f"malformed DP parameters: {exc!r}") from exc


def _skellam_rdp(z: float, d2: float, dimension: int, alpha: float) -> float:
    mu = (z * d2) ** 2 / 2
    d1 = min(d2**2, math.sqrt(dimension) * d2)
    correction = min(((2 * alpha - 1) * d2**2 + 6 * d1) / (16 * mu**2), 3 * d1 / (4 * mu))
    return alpha * d2**2 / (4 * mu) + correction


def subsampled_rdp_upper(q: float, alpha: int, rdp_of: Any) -> float:
    """Zhu & Wang (2019) upper bound for Poisson subsampling of any mechanism, integer alpha >= 2."""
    if q == 1:
        return float(rdp_of(alpha))
    log_terms = [
        (alpha - 1) * math.log1p(-q) + math.log(alpha * q - q + 1),
        _log_comb(alpha, 2) + 2 * math.log(q) + (alpha - 2) * math.log1p(-q) + rdp_of(2),
    ]
    for ell in range(3, alpha + 1):
        log_terms.append(
            math.log(3) + _log_comb(alpha, ell) + ell * math.log(q) + (alpha - ell) * math.log1p(-q)
            + (ell - 1) * rdp_of(ell)
        )
    return float(logsumexp(log_terms)) / (alpha - 1)


def _log_comb(n: int, k: int) -> float:
    return float(gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1))


def round_rdp(params: RoundPrivacy) -> np.ndarray:
    """RDP epsilon at each of ``ORDERS`` for one round (a copy: the cached array stays intact)."""
    return _round_rdp(params).copy()


@functools.lru_cache(maxsize=256)
def _round_rdp(params: RoundPrivacy) -> np.ndarray:
    """Rounds of a federation mostly repeat their parameters: compute each distinct one once."""
    orders = ORDERS
    z, q = params.noise_multiplier, params.sample_rate
    if params.mechanism == "gaussian":
        return np.asarray(compute_rdp(q=q, noise_multiplier=z, steps=1, orders=list(orders)), dtype=np.float64)

    def curve(alpha: float) -> float:
        return _skellam_rdp(z, params.ring_sensitivity, params.dimension, alpha)

    if q == 1:
        return np.array([curve(a) for a in orders])
    return np.array([subsampled_rdp_upper(q, int(a), curve) if float(a).is_integer() else np.inf for a in orders])


def epsilon(rounds: Sequence[RoundPrivacy], delta: float) -> float:
    """Cumulative epsilon of ``rounds`` at ``delta`` (0 for no rounds)."""
    if not 0 < delta < 1:
        raise DPParameterError(f"delta must be in (0, 1), got {delta!r}")
    if not rounds:
        return 0.0
    counts = Counter(rounds)
    total = np.sum([_round_rdp(r) * n for r, n in counts.items()], axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus warns when the best order is at the grid's edge
        eps, _ = get_privacy_spent(orders=list(ORDERS), rdp=total, delta=delta)
    return float(eps)


@dataclass(frozen=True)
class PrivacyBudget:
    """The consortium's budget (set at deployment): total epsilon at one delta."""

    epsilon: float
    delta: float

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and 0 < self.delta < 1):
            raise DPParameterError("budget needs epsilon > 0 and delta in (0, 1)")


@dataclass
class PrivacyAccount:
    """The rounds spent so far under one budget; refuses a round that would overspend it."""

    budget: PrivacyBudget
    rounds: list[RoundPrivacy] = field(default_factory=list)

    def spent(self) -> float:
        return epsilon(self.rounds, self.budget.delta)

    def per_round(self) -> list[float]:
        """Each round's own epsilon (what the audit shows next to the cumulative figure)."""
        return [epsilon([r], self.budget.delta) for r in self.rounds]

    def check(self, next_round: RoundPrivacy) -> float:
        """The cumulative epsilon after ``next_round``; raises ``BudgetExceeded`` if over budget."""
        after = epsilon([*self.rounds, next_round], self.budget.delta)
        if after > self.budget.epsilon:
            raise BudgetExceeded(
                f"round would bring epsilon to {after:.4g}, over the budget {self.budget.epsilon:g} "
                f"(delta {self.budget.delta:g}; spent {self.spent():.4g} in {len(self.rounds)} rounds)"
            )
        return after

    def record(self, next_round: RoundPrivacy) -> float:
        """Check, then add ``next_round``; returns the new cumulative epsilon."""
        after = self.check(next_round)
        self.rounds.append(next_round)
        return after


def noise_multiplier_for(
    target_epsilon: float, rounds: int, delta: float, sample_rate: float = 1.0, like: RoundPrivacy | None = None
) -> float:
    """The smallest z (to 1e-3) whose ``rounds`` rounds together spend at most ``target_epsilon`` at ``delta``:
    how a target for a whole run becomes the per-round noise (bisection; epsilon falls as z grows). Rounds are
    Gaussian over every member's update unless ``like`` gives the other parameters (e.g. a Skellam round)."""
    if not (math.isfinite(target_epsilon) and target_epsilon > 0) or rounds < 1:
        raise DPParameterError(f"need a positive target epsilon and rounds, got {target_epsilon!r} and {rounds}")
    template = like or RoundPrivacy(1.0, 1.0, sample_rate, 1)

    def spent(z: float) -> float:
        return epsilon([replace(template, noise_multiplier=z)] * rounds, delta)

    low, high = 0.05, 1000.0
    if spent(high) > target_epsilon:
        raise DPParameterError(f"epsilon {target_epsilon:g} over {rounds} rounds needs a multiplier above {high:g}")
    while high - low > 1e-3:
        mid = (low + high) / 2
        low, high = (mid, high) if spent(mid) > target_epsilon else (low, mid)
    return high
