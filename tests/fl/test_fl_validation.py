"""Every validation rule rejects its bad input, naming the institution and the tensor."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from fedledger.fl import (
    AlignmentAggregation,
    ClientUpdate,
    IndexMap,
    ModelSpec,
    UpdateRejected,
    UpdateValidator,
    ValidationPolicy,
    extract_submodel,
    extract_with_map,
    initial_global_state,
    make_index_map,
    validate_update,
)

SPEC = ModelSpec("mlp", (5,), 3, (16, 8))
BASE = bytes(range(32))


@pytest.fixture
def global_state():
    return initial_global_state(SPEC, 7)


def _good(global_state, rate=0.5, shift=0.01):
    sub, index_map = extract_submodel(global_state, SPEC, rate, "rolling", 5)
    state = {n: t + shift for n, t in sub.items()}
    return ClientUpdate("hospital-7", state, index_map, 40, BASE)


def _rejects(update, global_state, tensor, words, policy=None, base=BASE):
    with pytest.raises(UpdateRejected) as info:
        validate_update(update, SPEC, global_state, base, policy)
    exc = info.value
    assert exc.institution == "hospital-7"
    assert exc.tensor == tensor
    assert "hospital-7" in str(exc)
    for word in words:
        assert word in str(exc)
    return exc


def test_good_update_passes_unchanged(global_state):
    update = _good(global_state)
    assert validate_update(update, SPEC, global_state, BASE, ValidationPolicy(max_norm=100.0)) is update


def test_rejects_other_base_model(global_state):
    update = replace(_good(global_state), base_digest=bytes(32))
    _rejects(update, global_state, "*", ["base model", BASE.hex()])


def test_rejects_missing_base_digest_when_one_is_expected(global_state):
    _rejects(replace(_good(global_state), base_digest=None), global_state, "*", ["none"])


@pytest.mark.parametrize("count", [0, -3])
def test_rejects_non_positive_sample_count(global_state, count):
    _rejects(replace(_good(global_state), num_samples=count), global_state, "*", ["sample count"])


def test_rejects_shape_not_matching_announced_width(global_state):
    update = _good(global_state)
    update.state["layers.0.weight"] = torch.zeros(16, 5)  # full width, but the update announces 1/2
    _rejects(update, global_state, "layers.0.weight", ["shape (16, 5)", "0.5"])


def test_rejects_index_map_of_other_width(global_state):
    update = _good(global_state)
    quarter = make_index_map(SPEC, 0.25)
    rates_swapped = IndexMap(0.5, quarter.global_shapes, quarter.indices)  # announces 1/2, covers 1/4
    _rejects(replace(update, index_map=rates_swapped), global_state, "head.weight", ["index map covers"])


def test_rejects_index_map_cutting_layers_inconsistently(global_state):
    update = _good(global_state)
    indices = dict(update.index_map.indices)
    # layer 0's outputs are units {5..12}; claim layer 1 read units {0..7} instead
    indices["layers.1.weight"] = (indices["layers.1.weight"][0], torch.arange(8))
    bad = IndexMap(0.5, update.index_map.global_shapes, indices)
    _rejects(replace(update, index_map=bad), global_state, "layers.1.weight", ["hidden layer 0"])


def test_rejects_index_outside_global_tensor_and_repeats(global_state):
    update = _good(global_state)
    indices = dict(update.index_map.indices)
    indices["head.weight"] = (None, torch.tensor([0, 1, 2, 99]))
    bad = IndexMap(0.5, update.index_map.global_shapes, indices)
    _rejects(replace(update, index_map=bad), global_state, "head.weight", ["outside"])
    indices["head.weight"] = (None, torch.tensor([0, 1, 1, 2]))
    bad = IndexMap(0.5, update.index_map.global_shapes, indices)
    _rejects(replace(update, index_map=bad), global_state, "head.weight", ["repeats"])


def test_rejects_missing_and_extra_tensors(global_state):
    update = _good(global_state)
    del update.state["head.bias"]
    _rejects(update, global_state, "head.bias", ["missing"])
    update = _good(global_state)
    update.state["backdoor.weight"] = torch.zeros(1)
    _rejects(update, global_state, "backdoor.weight", ["not a parameter"])


def test_rejects_wrong_dtype(global_state):
    update = _good(global_state)
    update.state["norms.1.bias"] = update.state["norms.1.bias"].double()
    _rejects(update, global_state, "norms.1.bias", ["dtype", "float64"])


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rejects_nan_and_inf(global_state, bad):
    update = _good(global_state)
    update.state["layers.1.bias"][3] = bad
    _rejects(update, global_state, "layers.1.bias", ["NaN or Inf"])


def test_norm_bound_reject_names_largest_tensor(global_state):
    update = _good(global_state, shift=0.0)
    update.state["layers.0.weight"] += 1.0  # 8 x 5 entries moved by 1: norm sqrt(40)
    exc = _rejects(
        update, global_state, "layers.0.weight", ["L2 norm 6.325", "bound 1"], policy=ValidationPolicy(max_norm=1.0)
    )
    assert "largest" in exc.reason


def test_norm_bound_clip_scales_update_onto_bound(global_state):
    update = _good(global_state, shift=0.5)
    base = extract_with_map(global_state, update.index_map)
    norm = math.sqrt(sum(float((update.state[n] - base[n]).double().pow(2).sum()) for n in base))
    clipped = validate_update(update, SPEC, global_state, BASE, ValidationPolicy(max_norm=norm / 4, norm_policy="clip"))
    for name in base:  # every entry moved a quarter of the way: 0.5 -> 0.125
        assert torch.allclose(clipped.state[name] - base[name], torch.full_like(base[name], 0.125), atol=1e-6)
    assert update.state["head.bias"][0] - base["head.bias"][0] == pytest.approx(0.5)  # input untouched


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        ValidationPolicy(max_norm=-1)
    with pytest.raises(ValueError):
        ValidationPolicy(norm_policy="ignore")


def test_aggregator_with_validator_refuses_and_leaves_global_untouched(global_state):
    before = {n: t.clone() for n, t in global_state.items()}
    good = _good(global_state)
    bad = _good(global_state)
    bad.state["head.weight"][0, 0] = math.nan
    bad = replace(bad, institution="hospital-7")
    strategy = AlignmentAggregation(check=UpdateValidator(SPEC, global_state, BASE))
    with pytest.raises(UpdateRejected, match=r"head\.weight"):
        strategy.aggregate(global_state, [good, bad])
    assert all(torch.equal(before[n], global_state[n]) for n in before)


def test_rejects_value_beyond_the_exact_aggregation_range(global_state):
    update = _good(global_state)
    update.state["layers.1.bias"][0] = 1e9
    _rejects(update, global_state, "layers.1.bias", ["value 1e+09 outside the aggregation range +-2**8"])
