"""The value bound of a secure DP round, from public data: the base model every party holds and the clip.

A member's value is base + a change clipped to the plan's clip, so no honest value leaves max|base| + clip;
the bound is the rule's while that fits, else the next power of two, declared in every signed join and the
same for all members, or no setup is built."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fedledger.dp.central_aggregation import clip_update
from fedledger.fl import ClientUpdate
from fedledger.fl.submodel import full_index_map
from fedledger.protocol.secagg_noise import NoisePlan
from fedledger.protocol.secagg_round import Join, SecureRoundError, build_setup, joins_value_bound
from fedledger.protocol.secagg_rule import SecAggRule, SecAggRuleError, dp_value_bound, is_dp_value_bound
from fedledger.secagg.errors import SecAggInputError
from fedledger.secagg.layout import flatten_state
from fedledger.secagg.member import RoundKeys
from fedledger.secagg.ring import RingSpec, choose_ring, encode
from fedledger.sm9 import SignMasterKey, extract_sign_key

RULE = SecAggRule(3)
PLAN = NoisePlan(1.0, 1.25)


def _base(peak: float) -> dict[str, torch.Tensor]:
    state = {"w": torch.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": torch.zeros(3)}
    state["w"][2, 3] = peak
    return state


@pytest.mark.parametrize(
    ("peak", "clip", "bound"),
    [
        (1.0, 1.0, 8.0),  # inside the rule's bound: nothing changes
        (6.9, 1.0, 8.0),
        (7.0, 1.0, 16.0),  # exactly 8 leaves no room for float32 rounding
        (-9.5, 1.0, 16.0),
        (9.5, 7.0, 32.0),
        (100.0, 1.0, 128.0),
    ],
)
def test_the_bound_covers_the_base_and_the_clip_in_a_power_of_two(peak: float, clip: float, bound: float) -> None:
    assert dp_value_bound(RULE, _base(peak), clip) == bound
    assert is_dp_value_bound(RULE, bound)


def test_every_honest_value_encodes_under_the_derived_bound_and_not_under_the_rule_s() -> None:
    rng = np.random.default_rng(5)
    base = _base(7.9)
    trained = {n: t + torch.from_numpy(rng.normal(0, 3, tuple(t.shape)).astype(np.float32)) for n, t in base.items()}
    trained["w"][2, 3] = 30.0  # trained far out: clipping brings it back within the clip of the base
    update = clip_update(ClientUpdate("m1", trained, full_index_map(base), 10), base, 1.0)
    values = flatten_state(update.state)
    bound = dp_value_bound(RULE, base, 1.0)
    spec = RingSpec(64, RULE.frac_bits)
    assert bound == 16.0 and encode(values, 10, spec, bound).size == values.size
    with pytest.raises(SecAggInputError, match="exceeds the bound 8"):
        encode(values, 10, spec, RULE.value_bound)


def test_a_base_the_ring_cannot_encode_exactly_is_a_clear_error() -> None:
    with pytest.raises(SecAggRuleError, match=r"needs value bound 256, past what 16 fractional bits encode exactly"):
        dp_value_bound(RULE, _base(127.5), 1.0)
    for broken in (math.nan, math.inf):
        with pytest.raises(SecAggRuleError, match="no value bound from a base model"):
            dp_value_bound(RULE, _base(broken), 1.0)
    # the largest bound still fits the 64-bit ring with 20 members of weight 10**4 and a wide noise tail
    assert choose_ring(20, 10**4, 128.0, 16, noise_tail=10**14).bits == 64


def test_only_the_rule_s_bound_or_a_power_of_two_above_it_can_be_declared() -> None:
    assert is_dp_value_bound(RULE, 8.0) and is_dp_value_bound(RULE, 64.0)
    assert not any(is_dp_value_bound(RULE, b) for b in (4.0, 12.0, 8.5))


def _joins(bounds: list[float]) -> dict[int, Join]:
    key = extract_sign_key(SignMasterKey.generate(), "hospital")
    index_map = full_index_map(_base(1.0)).to_dict()
    return {
        m: Join(0, m, f"0x{m}", RoundKeys().advert(0, m), index_map, 10, dp=PLAN, value_bound=b).signed(key)
        for m, b in enumerate(bounds, start=1)
    }


def test_the_join_carries_its_signed_bound_and_all_joins_must_agree() -> None:
    joins = _joins([16.0, 16.0, 16.0])
    data = joins[1].to_bytes()
    assert Join.from_bytes(data) == joins[1] and json.loads(data)["value_bound"] == 16.0
    assert joins_value_bound(RULE, joins) == 16.0
    shapes = {"w": (3, 4), "b": (3,)}
    assert build_setup(0, RULE, joins, shapes).weights == {1: 10, 2: 10, 3: 10}
    with pytest.raises(SecureRoundError, match="different value bounds"):
        build_setup(0, RULE, _joins([16.0, 16.0, 32.0]), shapes)
    with pytest.raises(SecureRoundError, match=r"value bound 12\.0 is none a base model gives"):
        build_setup(0, RULE, _joins([12.0, 12.0, 12.0]), shapes)
    for field, value in (("value_bound", 16), ("value_bound", None), ("value_bound", -16.0)):
        raw = {**json.loads(data), field: value}
        with pytest.raises(SecureRoundError, match="value_bound must be a positive JSON number"):
            Join.from_bytes(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode())
    without = {k: v for k, v in json.loads(data).items() if k != "value_bound"}
    with pytest.raises(SecureRoundError, match="malformed join message"):
        Join.from_bytes(json.dumps(without, sort_keys=True, separators=(",", ":")).encode())
