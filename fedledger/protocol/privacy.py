"""A round's differential-privacy parameters as its manifest's rule carries them, and the budget
check the aggregator makes before it opens a round and every node makes before it signs one.

Both sides run :func:`check_round_privacy` on ledger data alone (the budget from the contract,
earlier rounds' parameters from their posted manifests), so an aggregator cannot open a round that
honest nodes would refuse to sign, and the audit API recomputes the same epsilon.
Policy: a ledger with a budget accepts only DP rounds, within the budget; a ledger without one
accepts only rounds without DP (parameters nobody can account against a budget are refused).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from fedledger.dp.accountant import PrivacyAccount, PrivacyBudget, RoundPrivacy
from fedledger.dp.errors import DPParameterError
from fedledger.errors import FedLedgerError
from fedledger.protocol.manifest import ManifestUnreadable, read_posted_manifest
from fedledger.store import ContentStore

DP_RULE_KEY = "dp"
_REAL_FIELDS = ("clip", "noise_multiplier", "sample_rate", "ring_sensitivity")
_INT_FIELDS = ("participants", "dimension")
_FIELDS = {*_REAL_FIELDS, *_INT_FIELDS, "mechanism"}


class PrivacyRuleError(FedLedgerError, ValueError):
    """A round's DP parameters are malformed, or do not fit the ledger's privacy budget policy."""


def dp_rule(params: RoundPrivacy) -> dict[str, Any]:
    """The rule's ``dp`` member for ``params`` (JSON numbers that parse back to the same values)."""
    return params.to_dict()


def round_privacy_of(rule: Mapping[str, Any]) -> RoundPrivacy | None:
    """The DP parameters a manifest's rule names (None for a round without DP); strict, since the
    rule is untrusted: exactly the fields :func:`dp_rule` writes, each of its JSON type."""
    raw = rule.get(DP_RULE_KEY)
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != _FIELDS:
        keys = sorted(raw) if isinstance(raw, Mapping) else type(raw).__name__
        raise PrivacyRuleError(f"rule.{DP_RULE_KEY} must have exactly the fields {sorted(_FIELDS)}, got {keys}")
    for name in _REAL_FIELDS:  # finite too: "noise_multiplier": Infinity would claim epsilon 0
        if not isinstance(raw[name], float) or not math.isfinite(raw[name]):
            raise PrivacyRuleError(f"rule.{DP_RULE_KEY}.{name} must be a finite real number, got {raw[name]!r}")
    for name in _INT_FIELDS:
        if not isinstance(raw[name], int) or isinstance(raw[name], bool):
            raise PrivacyRuleError(f"rule.{DP_RULE_KEY}.{name} must be an integer, got {raw[name]!r}")
    if not isinstance(raw["mechanism"], str):
        raise PrivacyRuleError(f"rule.{DP_RULE_KEY}.mechanism must be text")
    try:
        return RoundPrivacy(**raw)
    except DPParameterError as exc:
        raise PrivacyRuleError(f"rule.{DP_RULE_KEY}: {exc}") from None


def ledger_budget(epsilon: float, delta: float) -> PrivacyBudget | None:
    """The budget the contract holds, as the accountant takes it; None when the ledger sets none."""
    return None if epsilon == 0 and delta == 0 else PrivacyBudget(epsilon, delta)


def accounted_rounds(past: Iterable[RoundPrivacy | None]) -> list[RoundPrivacy]:
    """Earlier rounds that spent privacy (rounds without DP, e.g. before a budget was set, spend
    none that an accountant can express; the audit lists them separately)."""
    return [p for p in past if p is not None]


def check_round_privacy(
    budget: PrivacyBudget | None, past: Sequence[RoundPrivacy | None], planned: RoundPrivacy | None
) -> float | None:
    """The cumulative epsilon after ``planned`` (None for a round without DP); raises
    PrivacyRuleError if the round does not fit the ledger's policy, BudgetExceeded if it would
    take the cumulative epsilon past the budget."""
    if budget is None:
        if planned is not None:
            raise PrivacyRuleError("the ledger sets no privacy budget, so a round with DP cannot be accounted")
        return None
    if planned is None:
        raise PrivacyRuleError(
            f"the ledger's privacy budget (epsilon {budget.epsilon:g}, delta {budget.delta:g}) "
            "requires DP in every round"
        )
    return PrivacyAccount(budget, accounted_rounds(past)).check(planned)


class _BudgetSetting(Protocol):
    @property
    def epsilon(self) -> float: ...

    @property
    def delta(self) -> float: ...


class PrivacyLedger(Protocol):
    """What the check reads from the ledger (``fedledger.chain.client.LedgerClient`` fits)."""

    def privacy_budget(self) -> _BudgetSetting: ...

    def global_models_posted(self) -> Sequence[Any]: ...


def check_round_on_ledger(
    ledger: PrivacyLedger, store: ContentStore, round_index: int, planned: RoundPrivacy | None
) -> float | None:
    """:func:`check_round_privacy` for round ``round_index`` with the budget the contract holds and
    the DP parameters of every earlier posted round, read from their manifests (a manifest that
    cannot be read refuses the round: its spending is unknown)."""
    setting = ledger.privacy_budget()
    budget = ledger_budget(setting.epsilon, setting.delta)
    past: list[RoundPrivacy | None] = []
    if budget is not None:  # without a budget only rounds without DP pass, whatever came before
        for post in ledger.global_models_posted():
            if post.round >= round_index:
                continue
            try:
                past.append(round_privacy_of(read_posted_manifest(store, post).rule))
            except ManifestUnreadable as exc:
                raise PrivacyRuleError(f"round {post.round}'s DP parameters are unknown: {exc.problem}") from None
    return check_round_privacy(budget, past, planned)
