"""The round manifest's rule carries the DP parameters: written by AggregationRule, read back
strictly with the published noise secret, and never claimed for a round whose pipeline adds no noise."""

from __future__ import annotations

import json

import pytest

from fedledger.dp.accountant import RoundPrivacy
from fedledger.fl import ValidationPolicy
from fedledger.protocol.manifest import ManifestError
from fedledger.protocol.noise_seed import PublishedNoise
from fedledger.protocol.privacy import round_privacy_of
from fedledger.protocol.round_check import AggregationRule

PRIVACY = RoundPrivacy(clip=1.0, noise_multiplier=2.5, sample_rate=1.0, participants=5)
NOISE = PublishedNoise(b"\x01" * 32, "bafkreisecret", b"\x02" * 32)


def _canonical(rule: AggregationRule) -> dict:
    return json.loads(json.dumps(rule.to_dict(), sort_keys=True, separators=(",", ":")))


def test_dp_parameters_round_trip_through_the_manifest_rule() -> None:
    rule = AggregationRule(policy=ValidationPolicy(12.5, "clip"), privacy=PRIVACY, noise=NOISE)
    raw = _canonical(rule)
    assert raw["dp"]["noise_multiplier"] == 2.5
    assert raw["noise"]["commitment"] == "0x" + "01" * 32
    assert AggregationRule.from_dict(raw) == rule
    assert round_privacy_of(raw) == PRIVACY


def test_a_rule_without_dp_is_unchanged() -> None:
    assert set(_canonical(AggregationRule())) == {"name", "max_norm", "norm_policy"}
    assert AggregationRule.from_dict(_canonical(AggregationRule())).privacy is None


def test_malformed_dp_in_a_rule_is_a_manifest_error() -> None:
    raw = _canonical(AggregationRule(privacy=PRIVACY, noise=NOISE))
    raw["dp"]["participants"] = "five"
    with pytest.raises(ManifestError, match="participants must be an integer"):
        AggregationRule.from_dict(raw)
    with pytest.raises(ManifestError, match="must have name"):
        AggregationRule.from_dict({**_canonical(AggregationRule()), "epsilon": 1.0})
    without_noise = _canonical(AggregationRule(privacy=PRIVACY, noise=NOISE))
    del without_noise["noise"]
    with pytest.raises(ManifestError, match="both dp and noise"):
        AggregationRule.from_dict(without_noise)
    bad_noise = _canonical(AggregationRule(privacy=PRIVACY, noise=NOISE))
    bad_noise["noise"]["commitment"] = "0x1234"
    with pytest.raises(ManifestError, match=r"noise\.commitment must be 0x and 64"):
        AggregationRule.from_dict(bad_noise)


def test_a_rule_claiming_dp_cannot_aggregate_without_its_secret_or_with_a_false_mechanism() -> None:
    with pytest.raises(ManifestError, match="needs its noise secret"):
        AggregationRule(privacy=PRIVACY, noise=NOISE).aggregation()
    subsampled = RoundPrivacy(1.0, 2.5, 0.1, 5)  # a claim of sampling would understate epsilon
    with pytest.raises(ManifestError, match="sample rate 1"):
        AggregationRule(privacy=subsampled, noise=NOISE).aggregation(lambda: bytes(32))
    with pytest.raises(ManifestError, match="to alignment only"):
        AggregationRule("median", privacy=PRIVACY, noise=NOISE).aggregation(lambda: bytes(32))
    assert AggregationRule(privacy=PRIVACY, noise=NOISE).aggregation(lambda: bytes(32)) is not None
    assert AggregationRule().aggregation() is not None


def test_the_recorded_participants_and_the_consortium_terms() -> None:
    rule = AggregationRule(policy=ValidationPolicy(3.0, "reject"), privacy=PRIVACY, noise=NOISE)
    assert rule.for_round(3).privacy == RoundPrivacy(1.0, 2.5, 1.0, 3)
    assert rule.consortium_terms() == AggregationRule(policy=ValidationPolicy(3.0, "reject"))
