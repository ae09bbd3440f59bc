"""The noise plan of a secure DP round: parsed strictly, declared in each member's signed join (so the
signature covers it), and the same for every member or no setup is built."""

from __future__ import annotations

import json
import math

import pytest

from fedledger.protocol.secagg_noise import NoisePlan, NoisePlanError, common_plan
from fedledger.protocol.secagg_round import Join, SecureRoundError
from fedledger.secagg.member import RoundKeys
from fedledger.sm9 import Signature, SignMasterKey, extract_sign_key, verify

PLAN = NoisePlan(1.0, 1.25)


@pytest.mark.parametrize(
    "raw",
    [
        {"clip": 1, "noise_multiplier": 1.25},  # an integer: not what to_dict writes
        {"clip": True, "noise_multiplier": 1.25},
        {"clip": 1.0},
        {"clip": 1.0, "noise_multiplier": 1.25, "mechanism": "skellam"},
        {"clip": 1.0, "noise_multiplier": -1.0},
        {"clip": 1.0, "noise_multiplier": math.inf},
        [1.0, 1.25],
        None,
    ],
)
def test_a_malformed_noise_plan_is_refused(raw: object) -> None:
    with pytest.raises(NoisePlanError, match="noise plan"):
        NoisePlan.from_dict(raw)


def test_members_agree_on_one_plan_or_none() -> None:
    assert NoisePlan.from_dict(PLAN.to_dict()) == PLAN
    assert common_plan([PLAN, NoisePlan(1.0, 1.25)]) == PLAN
    assert common_plan([None, None]) is None and common_plan([]) is None
    for plans in ([PLAN, NoisePlan(1.0, 0.5)], [PLAN, None]):
        with pytest.raises(NoisePlanError, match="different noise plans"):
            common_plan(plans)


def test_the_join_signature_covers_the_plan_and_a_join_without_dp_is_unchanged() -> None:
    master = SignMasterKey.generate()
    key = extract_sign_key(master, "hospital-1")
    keys = RoundKeys().advert(3, 1)
    join = Join(3, 1, "0xabc", keys, {"a": 1}, 10, dp=PLAN).signed(key)
    assert Join.from_bytes(join.to_bytes()) == join and json.loads(join.to_bytes())["dp"] == PLAN.to_dict()
    signature = Signature.from_der(join.signature)
    assert verify(master.public_key, "hospital-1", join.message(), signature)
    told_less = Join(3, 1, "0xabc", keys, {"a": 1}, 10, join.signature, NoisePlan(1.0, 0.5))
    assert not verify(master.public_key, "hospital-1", told_less.message(), signature)
    plain = Join(3, 1, "0xabc", keys, {"a": 1}, 10).signed(key)
    assert "dp" not in json.loads(plain.to_bytes()) and Join.from_bytes(plain.to_bytes()).dp is None
    raw = json.loads(join.to_bytes())
    raw["dp"] = {"clip": 1.0, "noise_multiplier": 0}
    with pytest.raises(SecureRoundError, match="malformed join message"):
        Join.from_bytes(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode())
