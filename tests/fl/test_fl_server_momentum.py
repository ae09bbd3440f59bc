"""Server momentum on the aligned model: G(t) = A(t) + beta (G(t-1) - G(t-2)) where covered,
exact (same bits in any update order, from the two previous global models alone), refusing bad input."""

from __future__ import annotations

import itertools

import pytest
import torch

from fedledger.fl import AggregationError, AlignmentAggregation, ClientUpdate, ModelSpec, make_index_map
from fedledger.fl.server_momentum import ServerMomentumAlignment, momentum_fraction

SPEC = ModelSpec("mlp", (3,), 2, (8,), normalise=False)


def _state(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = {"layers.0.weight": (8, 3), "layers.0.bias": (8,), "head.weight": (2, 8), "head.bias": (2,)}
    return {name: torch.randn(shape, generator=g) for name, shape in shapes.items()}


def _updates(round_index: int = 0) -> list[ClientUpdate]:
    out = []
    for i, (rate, n) in enumerate(((0.5, 7), (0.25, 3), (0.5, 11))):  # nobody covers units 4..7
        index_map = make_index_map(SPEC, rate, "static", round_index)
        g = torch.Generator().manual_seed(100 + i)
        state = {t: torch.randn(index_map.sub_shape(t), generator=g) for t in index_map.indices}
        out.append(ClientUpdate(f"inst{i}", state, index_map, n))
    return out


def test_heavy_ball_step_where_covered_previous_value_elsewhere():
    before, previous = _state(1), _state(2)
    aligned = AlignmentAggregation().aggregate(previous, _updates())
    new = ServerMomentumAlignment(0.9, before).aggregate(previous, _updates())
    bias = new["layers.0.bias"]
    expected = aligned["layers.0.bias"] + 0.9 * (previous["layers.0.bias"] - before["layers.0.bias"])
    assert torch.allclose(bias[:4], expected[:4], atol=1e-6)
    assert torch.equal(bias[4:], previous["layers.0.bias"][4:])  # uncovered: no momentum, no change
    assert not torch.allclose(bias[:4], aligned["layers.0.bias"][:4])  # momentum did act
    first_round = ServerMomentumAlignment(0.9, None).aggregate(previous, _updates())
    assert all(torch.equal(first_round[n], aligned[n]) for n in aligned)  # no history yet: plain alignment


def test_same_bits_in_every_order_and_for_every_node():
    before, previous = _state(3), _state(4)
    results = [
        ServerMomentumAlignment(0.9, before).aggregate(previous, list(order))
        for order in itertools.permutations(_updates())
    ]
    assert all(torch.equal(r[n], results[0][n]) for r in results for n in r)


def test_bad_momentum_and_bad_history_are_refused_and_change_nothing():
    assert momentum_fraction(0.9) == momentum_fraction(0.9000001) and momentum_fraction(0.9).denominator == 10
    for beta in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="server momentum must be in"):
            ServerMomentumAlignment(beta, None)
    previous = _state(5)
    copy = {n: t.clone() for n, t in previous.items()}
    wrong = dict(_state(6), **{"head.bias": torch.zeros(3)})
    with pytest.raises(AggregationError, match="two rounds back has shape"):
        ServerMomentumAlignment(0.9, wrong).aggregate(previous, _updates())
    huge = dict(_state(6), **{"head.bias": torch.full((2,), 1e9)})
    with pytest.raises(AggregationError, match="server momentum: value"):
        ServerMomentumAlignment(0.9, huge).aggregate(previous, _updates())
    assert all(torch.equal(previous[n], copy[n]) for n in copy)


def test_rule_hook_builds_the_momentum_strategy_for_alignment_only():
    from fedledger.fl.rules import aggregation_for

    before, previous = _state(7), _state(8)
    direct = ServerMomentumAlignment(0.5, before).aggregate(previous, _updates())
    named = aggregation_for("alignment", server_momentum=0.5, before_previous=before).aggregate(previous, _updates())
    assert all(torch.equal(direct[n], named[n]) for n in direct)
    assert type(aggregation_for("alignment")) is AlignmentAggregation
    with pytest.raises(ValueError, match="applies to 'alignment' only"):
        aggregation_for("median", server_momentum=0.5)
