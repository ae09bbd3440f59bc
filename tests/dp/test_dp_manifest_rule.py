"""The round manifest's rule carries the DP parameters: written by AggregationRule, read back
strictly, and never claimed for a round whose pipeline adds no noise."""

from __future__ import annotations

import json

import pytest

from fedledger.dp.accountant import RoundPrivacy
from fedledger.fl import ValidationPolicy
from fedledger.protocol.manifest import ManifestError
from fedledger.protocol.privacy import round_privacy_of
from fedledger.protocol.round_check import AggregationRule

PRIVACY = RoundPrivacy(clip=1.0, noise_multiplier=2.5, sample_rate=1.0, participants=5)


def _canonical(rule: AggregationRule) -> dict:
    return json.loads(json.dumps(rule.to_dict(), sort_keys=True, separators=(",", ":")))


def test_dp_parameters_round_trip_through_the_manifest_rule() -> None:
    rule = AggregationRule(policy=ValidationPolicy(12.5, "clip"), privacy=PRIVACY)
    raw = _canonical(rule)
    assert raw["dp"]["noise_multiplier"] == 2.5
    assert AggregationRule.from_dict(raw) == rule
    assert round_privacy_of(raw) == PRIVACY


def test_a_rule_without_dp_is_unchanged() -> None:
    assert set(_canonical(AggregationRule())) == {"name", "max_norm", "norm_policy"}
    assert AggregationRule.from_dict(_canonical(AggregationRule())).privacy is None


def test_malformed_dp_in_a_rule_is_a_manifest_error() -> None:
    raw = _canonical(AggregationRule(privacy=PRIVACY))
    raw["dp"]["participants"] = "five"
    with pytest.raises(ManifestError, match="participants must be an integer"):
        AggregationRule.from_dict(raw)
    with pytest.raises(ManifestError, match="must have name"):
        AggregationRule.from_dict({**_canonical(AggregationRule()), "epsilon": 1.0})


def test_a_rule_claiming_dp_cannot_aggregate_without_noise() -> None:
    with pytest.raises(ManifestError, match="not built into the round pipeline"):
        AggregationRule(privacy=PRIVACY).aggregation()
    assert AggregationRule().aggregation() is not None
