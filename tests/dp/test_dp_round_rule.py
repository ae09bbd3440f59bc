"""A round's DP parameters in the manifest's rule (strict parsing of untrusted JSON) and the
budget check shared by the aggregator (before opening) and the nodes (before signing)."""

from __future__ import annotations

import json

import pytest

from fedledger.dp.accountant import PrivacyBudget, RoundPrivacy, epsilon
from fedledger.dp.errors import BudgetExceeded
from fedledger.protocol.privacy import (
    DP_RULE_KEY,
    PrivacyRuleError,
    check_round_privacy,
    dp_rule,
    ledger_budget,
    round_privacy_of,
)

ROUND = RoundPrivacy(clip=1.0, noise_multiplier=1.1, sample_rate=1.0, participants=5)
SKELLAM = RoundPrivacy(1.0, 0.9, 0.5, 4, "skellam", ring_sensitivity=70000.0, dimension=1000)


def _through_json(rule: dict) -> dict:
    return json.loads(json.dumps(rule, sort_keys=True, separators=(",", ":")))


@pytest.mark.parametrize("params", [ROUND, SKELLAM])
def test_rule_round_trips_through_canonical_json(params: RoundPrivacy) -> None:
    rule = _through_json({"name": "alignment", DP_RULE_KEY: dp_rule(params)})
    assert round_privacy_of(rule) == params


def test_round_without_dp_has_none() -> None:
    assert round_privacy_of({"name": "alignment"}) is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("clip", 1, "real number"),  # an int where the writer puts a float: not canonical
        ("noise_multiplier", float("inf"), "finite real number"),  # would claim epsilon 0
        ("clip", float("nan"), "finite real number"),
        ("participants", 5.0, "integer"),
        ("participants", True, "integer"),
        ("mechanism", 3, "text"),
        ("clip", -1.0, "clip must be a positive"),
        ("mechanism", "laplace", "mechanism must be one of"),
        ("sample_rate", 1.5, "sample rate"),
    ],
)
def test_malformed_dp_parameters_are_refused(field: str, value: object, message: str) -> None:
    raw = _through_json(dp_rule(ROUND))
    raw[field] = value
    with pytest.raises(PrivacyRuleError, match=message):
        round_privacy_of({DP_RULE_KEY: raw})


def test_missing_or_extra_fields_are_refused() -> None:
    raw = _through_json(dp_rule(ROUND))
    with pytest.raises(PrivacyRuleError, match="exactly the fields"):
        round_privacy_of({DP_RULE_KEY: {**raw, "epsilon": 0.1}})
    del raw["clip"]
    with pytest.raises(PrivacyRuleError, match="exactly the fields"):
        round_privacy_of({DP_RULE_KEY: raw})
    with pytest.raises(PrivacyRuleError, match="exactly the fields"):
        round_privacy_of({DP_RULE_KEY: [1, 2]})


def test_ledger_without_budget_takes_no_dp_rounds_and_with_one_only_dp_rounds() -> None:
    assert ledger_budget(0.0, 0.0) is None
    assert check_round_privacy(None, [], None) is None
    with pytest.raises(PrivacyRuleError, match="sets no privacy budget"):
        check_round_privacy(None, [], ROUND)
    with pytest.raises(PrivacyRuleError, match="requires DP in every round"):
        check_round_privacy(ledger_budget(8.0, 1e-5), [ROUND], None)


def test_budget_check_refuses_exactly_the_round_that_would_overspend() -> None:
    budget = PrivacyBudget(8.0, 1e-5)
    past: list[RoundPrivacy | None] = [None]  # a round before the budget: not accounted
    while True:
        expected = epsilon([p for p in past if p] + [ROUND], budget.delta)
        if expected > budget.epsilon:
            break
        assert check_round_privacy(budget, past, ROUND) == expected
        past.append(ROUND)
    assert 2 < len(past) < 200
    with pytest.raises(BudgetExceeded, match="over the budget 8"):
        check_round_privacy(budget, past, ROUND)
