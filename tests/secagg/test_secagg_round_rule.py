"""The secure round's rule and manifest section are parsed strictly: what a co-signer compares with its
own configuration must mean one thing only."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fedledger.dp.accountant import RoundPrivacy
from fedledger.fl import ValidationPolicy
from fedledger.protocol.manifest import ManifestError
from fedledger.protocol.noise_seed import PublishedNoise
from fedledger.protocol.round_check import AggregationRule
from fedledger.protocol.secagg_round import SecAggRecord, SecureRoundError, secure_aggregation_rule
from fedledger.protocol.secagg_rule import SecAggRule, default_threshold

RULE = secure_aggregation_rule(ValidationPolicy(), 5)
NOISE = PublishedNoise(b"\x01" * 32, "Qm-secret", b"\x02" * 32)


def _parsed(raw: dict) -> AggregationRule:
    return AggregationRule.from_dict(json.loads(json.dumps(raw)))


def test_the_secure_rule_round_trips_through_canonical_json_and_is_t_of_n() -> None:
    assert RULE.secagg == SecAggRule(3) and default_threshold(2) == 2 and default_threshold(10) == 6
    assert _parsed(RULE.to_dict()) == RULE
    assert RULE.to_dict()["secagg"] == {"mode": "secagg", "threshold": 3, "frac_bits": 16, "value_bound": 8.0}
    assert "secagg" not in AggregationRule().to_dict()  # plain rounds' manifests are unchanged


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"threshold": True}, "threshold must be an integer"),
        ({"threshold": 1}, "threshold must be an integer >= 2"),
        ({"mode": "plain"}, "mode must be 'secagg'"),
        ({"value_bound": 8}, "value_bound must be a JSON number with a fraction"),
        ({"value_bound": -1.0}, "value bound must be a positive number"),
        ({"frac_bits": 31}, "fractional bits"),
        ({"extra": 1}, "exactly the fields"),
    ],
)
def test_a_malformed_secure_rule_is_a_manifest_error(change: dict, message: str) -> None:
    raw = RULE.to_dict()
    raw["secagg"] = {**raw["secagg"], **change}
    with pytest.raises(ManifestError, match=message):
        _parsed(raw)


def test_a_secure_rule_claims_nothing_it_cannot_do() -> None:
    with pytest.raises(ManifestError, match="no norm bound can be checked on a masked input"):
        AggregationRule("alignment", ValidationPolicy(5.0), secagg=SecAggRule(3))
    with pytest.raises(ManifestError, match="its rule is alignment"):
        AggregationRule("median", secagg=SecAggRule(3))
    # secure + DP: the members' Skellam shares are the noise; no central noise, secret or other mechanism
    skellam = RoundPrivacy(1.0, 2.0, 1.0, 5, "skellam", ring_sensitivity=2.0, dimension=10)
    with pytest.raises(ManifestError, match=r"mechanism skellam, sample rate 1, no noise secret.*with a noise secret"):
        AggregationRule(privacy=skellam, secagg=SecAggRule(3), noise=NOISE)
    with pytest.raises(ManifestError, match="the rule says gaussian at 1"):
        AggregationRule(privacy=RoundPrivacy(1.0, 2.0, 1.0, 5), secagg=SecAggRule(3))
    with pytest.raises(ManifestError, match=r"the rule says skellam at 0\.5"):
        AggregationRule(privacy=dataclasses.replace(skellam, sample_rate=0.5), secagg=SecAggRule(3))
    with pytest.raises(ManifestError, match="names both dp and noise"):
        AggregationRule(privacy=RoundPrivacy(1.0, 2.0, 1.0, 5))
    secure = AggregationRule(privacy=skellam, secagg=SecAggRule(3))
    assert AggregationRule.from_dict(secure.to_dict()) == secure and {"secagg", "dp"} <= set(secure.to_dict())
    assert "noise" not in secure.to_dict()
    with pytest.raises(ManifestError, match="computed by compute_secure_round"):
        RULE.aggregation()


def test_a_malformed_secagg_record_is_refused_with_its_reason() -> None:
    ref = {"cid": "Qm", "digest": "0x" + "00" * 32}
    good = {"setup": ref, "joins": {"1": ref}, "shares": {"1": ref}, "survivors": [1], "reveals": {}, "cheaters": {}}
    assert SecAggRecord.from_dict(good).to_dict() == good
    for bad, message in [
        ({**good, "survivors": [True]}, "survivors must be a list of member ids"),
        ({**good, "joins": {"01": ref}}, "member ids must be decimal integers"),
        ({**good, "setup": {"cid": "Qm", "digest": "0x12"}}, "64 hex digits"),
        ({**good, "cheaters": {"1": 5}}, "map member ids to reasons"),
        ({k: v for k, v in good.items() if k != "reveals"}, "exactly the fields"),
    ]:
        with pytest.raises(SecureRoundError, match=message):
            SecAggRecord.from_dict(bad)
