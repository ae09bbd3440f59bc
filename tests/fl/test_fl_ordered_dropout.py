"""FjORD-style ordered dropout: a wide client's narrow prefixes learn too, and nothing else changes."""

from __future__ import annotations

import pytest
import torch

from fedledger.fl.data import load_dataset, partition
from fedledger.fl.evaluation import evaluate
from fedledger.fl.models import default_spec, initial_global_state
from fedledger.fl.ordered_dropout import NestedWidths
from fedledger.fl.submodel import extract_submodel
from fedledger.fl.training import TrainConfig, train_local

SPEC = default_spec((1, 8, 8), 10)


@pytest.fixture(scope="module")
def shard():
    return partition(load_dataset("digits"), 2, "iid", seed=0)[0]


def _prefix_accuracy(state, shard, rate):
    sub, _ = extract_submodel(state, SPEC, rate, "static")
    return evaluate(SPEC.narrowed(rate), sub, shard.test.X, shard.test.y)["accuracy"]


def test_nested_training_makes_the_narrow_prefix_a_model_of_its_own(shard):
    g = initial_global_state(SPEC, 0)
    runs = {}
    for nested in ((), (0.125,)):
        config = TrainConfig(epochs=3, seed=1, nested_rates=nested)
        runs[nested], _, _ = train_local(SPEC, g, 1.0, shard.train, config)
    plain, fjord = _prefix_accuracy(runs[()], shard, 0.125), _prefix_accuracy(runs[(0.125,)], shard, 0.125)
    assert fjord > plain + 0.3, (plain, fjord)  # measured: 0.08 without, 0.58 with
    # the full model still learns (measured 0.73 with, 0.78 without), the update keeps its names and shapes
    assert evaluate(SPEC, runs[(0.125,)], shard.test.X, shard.test.y)["accuracy"] > 0.6
    assert {n: t.shape for n, t in runs[(0.125,)].items()} == {n: t.shape for n, t in g.items()}


def test_only_narrower_widths_are_nested_and_training_stays_deterministic(shard):
    assert NestedWidths(SPEC, 0.25, (1.0, 0.5, 0.25, 0.125, 0.0625)).rates == (0.125, 0.0625)
    assert NestedWidths(SPEC, 0.0625, (1.0, 0.5)).rates == ()
    g = initial_global_state(SPEC, 0)
    sub, _ = extract_submodel(g, SPEC, 0.5, "rolling", 3)
    config = TrainConfig(epochs=1, seed=4, nested_rates=(1.0, 0.5, 0.25))
    first, _, _ = train_local(SPEC, sub, 0.5, shard.train, config)
    second, _, _ = train_local(SPEC, sub, 0.5, shard.train, config)
    assert all(torch.equal(first[n], second[n]) for n in first)
