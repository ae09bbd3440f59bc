"""Alignment aggregation against hand-computed values and an independent dense reference."""

from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
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
from fedledger.fl.exact_sum import FLOAT_EXACT_WEIGHT, MAX_TOTAL_WEIGHT, MIN_EXPONENT, ExactSum, range_exponent

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


def _big_updates(weights: list[int]) -> tuple[dict[str, torch.Tensor], list[ClientUpdate]]:
    """Tensors spanning many CHUNK_ELEMENTS pieces, values over many magnitudes."""
    spec = ModelSpec("mlp", (300,), 10, (400,), normalise=False)
    g = {n: 0.05 * torch.randn(t.shape, generator=torch.Generator().manual_seed(3)) for n, t in initial_state(spec)}
    gen = torch.Generator().manual_seed(4)
    ups = []
    for i, w in enumerate(weights):
        sub, imap = extract_submodel(g, spec, (1.0, 0.5, 0.25)[i % 3], ("static", "rolling")[i % 2], i)
        state = {
            n: t + torch.randn(t.shape, generator=gen) * torch.exp(2 * torch.randn(t.shape, generator=gen)) * 1e-3
            for n, t in sub.items()
        }
        ups.append(ClientUpdate(f"h{i}", state, imap, w))
    return g, ups


def initial_state(spec: ModelSpec):
    from fedledger.fl import initial_global_state

    return initial_global_state(spec, 0).items()


def test_out_of_range_value_late_in_a_large_tensor_takes_back_everything_added():
    # the range is checked piece by piece while adding: a NaN in the last piece of the last
    # tensor comes after every other piece of the update was added, and must leave no trace
    g, ups = _big_updates([5, 7, 11])
    clean = AlignmentAggregation().aggregate(g, ups)
    bad = _update_copy(ups[0], "mallory")
    names = list(bad.state)
    for name in (names[0], names[-1]):  # a large weight matrix and the head's last entries
        bad.state[name].view(-1)[-1] = float("nan") if name == names[-1] else 1e9
        acc = StreamingAccumulator(g)
        for u in ups:
            acc.add(u)
        with pytest.raises(AggregationError, match=rf"mallory, tensor {re.escape(name)}: value (nan|1e\+09) outside"):
            acc.add(bad)
        assert acc.count == 3
        got = acc.result()
        assert all(torch.equal(got[n], clean[n]) for n in clean), name
        bad = _update_copy(ups[0], "mallory")


def _update_copy(update: ClientUpdate, name: str) -> ClientUpdate:
    return ClientUpdate(name, {n: t.clone() for n, t in update.state.items()}, update.index_map, update.num_samples)


def test_rounds_past_the_float64_bound_give_the_same_bits_in_every_order():
    # below FLOAT_EXACT_WEIGHT the integers live in float64, beyond it in int64; the switch
    # happens after a different update in each order, and the result must not show it
    weights = [FLOAT_EXACT_WEIGHT - 3, FLOAT_EXACT_WEIGHT, 5, 2**22]
    g, ups = _big_updates(weights)
    name = "layers.0.bias"
    g[name][0] = 200.0  # range +-2**12
    for u in ups:  # values near the range's edge: sums far past 2**53 grid steps
        u.state[name] = (3800.0 + 250.0 * torch.tanh(u.state[name] * 100)).contiguous()
    reference = AlignmentAggregation().aggregate(g, ups)
    for order in ([3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]):
        got = AlignmentAggregation().aggregate(g, [ups[i] for i in order])
        assert all(torch.equal(got[n], reference[n]) for n in reference), order
    # and it is the exactly computed mean: per entry, integers trunc(n * x * unit) summed in Python
    e = range_exponent(g[name])
    unit = 2.0 ** (30 - e)
    for i in (0, 150, 399):
        covering = []
        for u in ups:
            dims = u.index_map.indices[name][0]
            positions = list(range(400)) if dims is None else dims.tolist()
            if i in positions:
                covering.append((u.num_samples, float(u.state[name][positions.index(i)])))
        total = sum(math.trunc(float(w) * unit * x) for w, x in covering)
        assert abs(total) > 2**53  # past float64's exact integers: the int64 path decides
        expected = np.float32(float(total) / float(sum(w for w, _ in covering))) * np.float32(1.0 / unit)
        assert float(reference[name][i]) == float(expected), i


def test_sums_past_the_float64_bound_hold_the_exact_integers_in_every_order():
    # float64 would round these totals (odd integers above 2**53); the switch to int64 must not
    weights = [FLOAT_EXACT_WEIGHT - 3, FLOAT_EXACT_WEIGHT, 5, 2**22]
    gen = torch.Generator().manual_seed(8)
    values = [(3800.0 + 250.0 * torch.rand(400, generator=gen)).numpy() for _ in weights]
    values[2] = torch.rand(400, generator=gen).numpy()  # fine bits: odd grid integers
    unit = 2.0 ** (30 - 12)
    exact = [
        sum(math.trunc(float(w) * unit * float(v[i])) for w, v in zip(weights, values, strict=True)) for i in range(400)
    ]
    assert min(exact) > 2**53 and any(t % 2 for t in exact)
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        acc = ExactSum((400,), 12)
        for i in order:
            acc.admit(weights[i])
            acc.add_block(values[i], weights[i], (slice(None),))
        assert [int(t) for t in acc.total.tolist()] == exact, order
