"""Alignment aggregation against hand-computed values and an independent dense reference."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.fl import (
    AggregationError,
    AlignmentAggregation,
    ClientUpdate,
    FedAvg,
    IndexMap,
    ModelSpec,
    StreamingAccumulator,
    extract_submodel,
    full_width_update,
    make_index_map,
)
from fedledger.fl.exact_sum import MAX_TOTAL_WEIGHT, MIN_EXPONENT

SPEC = ModelSpec("mlp", (2,), 2, (4,), normalise=False)


def _const_global(value: float) -> dict[str, torch.Tensor]:
    shapes = {"layers.0.weight": (4, 2), "layers.0.bias": (4,), "head.weight": (2, 4), "head.bias": (2,)}
    return {name: torch.full(shape, value) for name, shape in shapes.items()}


def _update(name: str, rate: float, n: int, fill: float, selection: str = "static", round_index: int = 0):
    index_map = make_index_map(SPEC, rate, selection, round_index)
    state = {t: torch.full(index_map.sub_shape(t), fill) for t in index_map.indices}
    return ClientUpdate(name, state, index_map, n)


def test_hand_computed_static_example():
    # A: full width, 1 sample, all ones.  B: half width (units 0,1), 3 samples, all fives.
    # Units 0,1: (1*1 + 3*5) / 4 = 4.  Units 2,3: only A covers them -> 1.
    new = AlignmentAggregation().aggregate(_const_global(9.0), [_update("A", 1.0, 1, 1.0), _update("B", 0.5, 3, 5.0)])
    expected_rows = torch.tensor([4.0, 4.0, 1.0, 1.0])
    assert torch.equal(new["layers.0.bias"], expected_rows)
    assert torch.equal(new["layers.0.weight"], expected_rows[:, None].expand(4, 2))
    assert torch.equal(new["head.weight"], expected_rows[None, :].expand(2, 4))
    assert torch.equal(new["head.bias"], torch.tensor([4.0, 4.0]))  # classes: covered by both


def test_hand_computed_rolling_example_with_distinct_values():
    # Bias of 4 units. A (full, n=1) = [1,2,3,4]. B (rate 1/2, rolling, round 3): window starts at
    # unit 3 and wraps -> units {3, 0}; sub positions are sorted global units, so B=[10,20] sits at 0 and 3.
    # unit 0: (1 + 3*10)/4 = 7.75; unit 3: (4 + 3*20)/4 = 16; units 1, 2 only from A.
    global_state = _const_global(0.0)
    a = _update("A", 1.0, 1, 0.0)
    a.state["layers.0.bias"] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    b = _update("B", 0.5, 3, 0.0, "rolling", 3)
    assert b.index_map.indices["layers.0.bias"][0].tolist() == [0, 3]
    b.state["layers.0.bias"] = torch.tensor([10.0, 20.0])
    new = AlignmentAggregation().aggregate(global_state, [a, b])
    assert torch.equal(new["layers.0.bias"], torch.tensor([7.75, 2.0, 3.0, 16.0]))


def test_uncovered_entries_keep_previous_value():
    previous = {n: torch.arange(t.numel(), dtype=torch.float32).reshape(t.shape) for n, t in _const_global(0).items()}
    new = AlignmentAggregation().aggregate(previous, [_update("B", 0.5, 2, 5.0), _update("C", 0.25, 1, 2.0)])
    # unit 0: (2*5 + 1*2)/3 = 4; unit 1: only B -> 5; units 2, 3: nobody -> previous values
    assert torch.equal(new["layers.0.bias"], torch.tensor([4.0, 5.0, 2.0, 3.0]))
    assert torch.equal(new["layers.0.weight"][2:], previous["layers.0.weight"][2:])
    assert torch.equal(new["head.weight"][:, 2:], previous["head.weight"][:, 2:])
    assert torch.equal(previous["layers.0.bias"], torch.tensor([0.0, 1.0, 2.0, 3.0]))  # input not mutated


def test_no_updates_returns_copy_of_global():
    g = _const_global(3.0)
    new = AlignmentAggregation().aggregate(g, [])
    assert all(torch.equal(new[n], g[n]) for n in g)


def test_fedavg_is_weighted_mean_and_refuses_sub_models():
    g = _const_global(0.0)
    a = full_width_update("A", _const_global(2.0), 1)
    b = full_width_update("B", _const_global(6.0), 3)
    new = FedAvg().aggregate(g, [a, b])
    assert all(torch.equal(t, torch.full_like(t, 5.0)) for t in new.values())  # (2 + 18) / 4
    try:
        FedAvg().aggregate(g, [_update("C", 0.5, 1, 1.0)])
    except AggregationError as exc:
        assert "C" in str(exc)
    else:
        raise AssertionError("FedAvg accepted a half-width update")


def test_alignment_with_all_full_width_equals_fedavg():
    g = _const_global(0.0)
    ups = [full_width_update("A", _const_global(1.0), 2), full_width_update("B", _const_global(4.0), 1)]
    a = AlignmentAggregation().aggregate(g, ups)
    b = FedAvg().aggregate(g, ups)
    assert all(torch.equal(a[n], b[n]) for n in a)


def _dense_reference(global_state, updates):
    """Independent reference: expand every update into a dense global-size tensor and 0/1 mask by
    looping over index combinations, then weighted mean where any mask is set."""
    out = {}
    for name, prev in global_state.items():
        num = torch.zeros_like(prev, dtype=torch.float64)
        den = torch.zeros_like(prev, dtype=torch.float64)
        for u in updates:
            dims = u.index_map.indices[name]
            vecs = [list(range(s)) if d is None else d.tolist() for d, s in zip(dims, prev.shape, strict=True)]
            sub = u.state[name].double()
            import itertools

            for sub_pos in itertools.product(*[range(len(v)) for v in vecs]):
                gpos = tuple(v[k] for v, k in zip(vecs, sub_pos, strict=True))
                num[gpos] += u.num_samples * sub[sub_pos]
                den[gpos] += u.num_samples
        out[name] = torch.where(den > 0, num / den.clamp_min(1), prev.double())
    return out


@settings(max_examples=25, deadline=None)
@given(
    rates=st.lists(st.sampled_from([1.0, 0.5, 0.34, 0.25, 0.125]), min_size=1, max_size=4),
    samples=st.lists(st.integers(1, 50), min_size=4, max_size=4),
    rounds=st.lists(st.integers(0, 20), min_size=4, max_size=4),
    selection=st.sampled_from(["static", "rolling", "random"]),
    family=st.sampled_from(["mlp", "cnn"]),
    seed=st.integers(0, 10_000),
)
def test_matches_dense_reference(rates, samples, rounds, selection, family, seed):
    spec = ModelSpec("mlp", (3,), 3, (8, 6)) if family == "mlp" else ModelSpec("cnn", (1, 4, 4), 2, (8, 5))
    gen = torch.Generator().manual_seed(seed)
    from fedledger.fl import initial_global_state

    global_state = initial_global_state(spec, seed)
    updates = []
    for i, rate in enumerate(rates):
        sub, index_map = extract_submodel(global_state, spec, rate, selection, rounds[i])
        state = {n: torch.randn(t.shape, generator=gen) for n, t in sub.items()}
        updates.append(ClientUpdate(f"i{i}", state, index_map, samples[i]))
    got = AlignmentAggregation().aggregate(global_state, updates)
    want = _dense_reference(global_state, updates)
    for name in global_state:
        assert torch.allclose(got[name].double(), want[name], atol=1e-6), name


def test_scattered_index_map_uses_advanced_indexing_path():
    # 40 units with every other one selected: 20 runs -> too many slice blocks -> index_put_ path.
    spec = ModelSpec("mlp", (2,), 2, (40,), normalise=False)
    from fedledger.fl import IndexMap, initial_global_state

    g = initial_global_state(spec, 0)
    units = torch.arange(0, 40, 2)
    imap = IndexMap(
        0.5,
        {n: tuple(t.shape) for n, t in g.items()},
        {
            "layers.0.weight": (units, None),
            "layers.0.bias": (units,),
            "head.weight": (None, units),
            "head.bias": (None,),
        },
    )
    state = {n: torch.ones(imap.sub_shape(n)) for n in g}
    new = AlignmentAggregation().aggregate(g, [ClientUpdate("A", state, imap, 1)])
    assert torch.equal(new["layers.0.bias"][units], torch.ones(20))
    assert torch.equal(new["layers.0.bias"][1::2], g["layers.0.bias"][1::2])


def test_value_outside_fixed_point_range_is_rejected_and_changes_nothing():
    g = _const_global(0.5)
    acc = StreamingAccumulator(g)
    acc.add(_update("A", 1.0, 2, 1.0))
    huge = _update("B", 0.5, 1, 1.0)
    huge.state["head.bias"] = torch.tensor([1.0, 1e6])
    with pytest.raises(AggregationError, match=r"B, tensor head\.bias: value 1e\+06 outside the aggregation range"):
        acc.add(huge)
    nan = _update("C", 0.5, 1, 1.0)
    nan.state["layers.0.bias"] = torch.tensor([float("nan"), 0.0])
    with pytest.raises(AggregationError, match=r"C, tensor layers\.0\.bias: value nan"):
        acc.add(nan)
    assert acc.count == 1
    assert all(torch.equal(t, torch.ones_like(t)) for t in acc.result().values())


def test_round_sample_total_is_bounded():
    acc = StreamingAccumulator(_const_global(0.0))
    acc.add(_update("A", 1.0, MAX_TOTAL_WEIGHT - 1, 1.0))
    with pytest.raises(AggregationError, match="B: sample counts of the round exceed"):
        acc.add(_update("B", 1.0, 2, 1.0))
    assert torch.equal(acc.result()["head.bias"], torch.ones(2))


def test_mean_is_within_the_documented_bound_of_the_exact_mean():
    # cancellation (0.9 - 1.0 + ...) leaves a mean far below the largest term: exact rationals decide
    values = [0.3, -1.0e-3, 7.25e-5]
    weights = [3, 1000, 17]
    g = {"layers.0.bias": torch.zeros(1)}
    imap = IndexMap(1.0, {"layers.0.bias": (1,)}, {"layers.0.bias": (None,)})
    ups = [
        ClientUpdate(str(i), {"layers.0.bias": torch.tensor([v])}, imap, w)
        for i, (v, w) in enumerate(zip(values, weights, strict=True))
    ]
    got = Fraction(float(AlignmentAggregation().aggregate(g, ups)["layers.0.bias"][0]))
    exact = sum(Fraction(float(torch.tensor(v))) * w for v, w in zip(values, weights, strict=True)) / sum(weights)
    grid = Fraction(2) ** (MIN_EXPONENT - 30)  # exact_sum's grid of the weighted sum for this range
    assert abs(got - exact) <= abs(exact) / 2**24 + Fraction(len(values), sum(weights)) * grid
    assert abs(got - exact) < abs(exact) / 2**10  # and it is no coarse approximation either
