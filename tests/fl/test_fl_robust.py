"""Coordinate-wise trimmed mean and median: hand-computed values, a poisoner, exactness."""

from __future__ import annotations

import pytest
import torch

from fedledger.fl import AggregationError, ClientUpdate, ModelSpec, extract_submodel, initial_global_state
from fedledger.fl.rules import AGGREGATION_RULES, aggregation_for
from fedledger.fl.submodel import make_index_map

SPEC = ModelSpec("mlp", (2,), 2, (4,), normalise=False)


def _update(name: str, rate: float, fill: float, n: int = 1) -> ClientUpdate:
    index_map = make_index_map(SPEC, rate, "static", 0)
    return ClientUpdate(name, {t: torch.full(index_map.sub_shape(t), fill) for t in index_map.indices}, index_map, n)


def _zeros() -> dict[str, torch.Tensor]:
    return {n: torch.zeros(t.shape) for n, t in initial_global_state(SPEC, 0).items()}


def test_median_ignores_one_poisoner_and_its_sample_count():
    ups = [_update("A", 1.0, 1.0), _update("B", 1.0, 2.0), _update("C", 1.0, 3.0), _update("X", 1.0, -200.0, 10**6)]
    new = aggregation_for("median").aggregate(_zeros(), ups)
    assert all(torch.equal(t, torch.full_like(t, 1.5)) for t in new.values())  # middle two: (1 + 2) / 2


def test_trimmed_mean_drops_extremes_per_entry_over_covering_updates_only():
    # bias units 0,1 covered by 5 updates (trim 1 each end), units 2,3 by 2 (trim 0), nobody else
    ups = [_update("A", 1.0, 1.0), _update("B", 1.0, 3.0)]
    ups += [_update("C", 0.5, 100.0), _update("D", 0.5, 2.0), _update("E", 0.5, -50.0)]
    new = aggregation_for("trimmed_mean", trim_fraction=0.2).aggregate(_zeros(), ups)
    assert torch.equal(new["layers.0.bias"], torch.tensor([2.0, 2.0, 2.0, 2.0]))  # (1+3+2)/3 and (1+3)/2


def test_uncovered_entries_keep_previous_value():
    previous = {n: torch.full(t.shape, 7.0) for n, t in _zeros().items()}
    new = aggregation_for("median").aggregate(previous, [_update("A", 0.5, 1.0)])
    assert torch.equal(new["layers.0.bias"], torch.tensor([1.0, 1.0, 7.0, 7.0]))


def test_result_does_not_depend_on_update_order():
    spec = ModelSpec("cnn", (1, 6, 6), 3, (8, 6))
    g = initial_global_state(spec, 1)
    gen = torch.Generator().manual_seed(3)
    ups = []
    for i, rate in enumerate((1.0, 0.5, 0.5, 0.25, 1.0, 0.125)):
        sub, imap = extract_submodel(g, spec, rate, "rolling", i)
        ups.append(ClientUpdate(f"i{i}", {n: torch.randn(t.shape, generator=gen) for n, t in sub.items()}, imap, 1))
    for rule in ("trimmed_mean", "median"):
        a = aggregation_for(rule).aggregate(g, ups)
        b = aggregation_for(rule).aggregate(g, ups[::-1])
        assert all(torch.equal(a[n], b[n]) for n in g), rule


def test_out_of_range_update_is_rejected_by_name():
    with pytest.raises(AggregationError, match=r"institution X, tensor layers\.0\.weight: value inf"):
        aggregation_for("trimmed_mean").aggregate(_zeros(), [_update("A", 1.0, 1.0), _update("X", 1.0, float("inf"))])


def test_unknown_rule_is_refused():
    assert AGGREGATION_RULES == ("alignment", "trimmed_mean", "median")
    with pytest.raises(ValueError, match="aggregation rule must be one of"):
        aggregation_for("mean")
