"""The experiment's explicit parameters: width assignment, federation widths, the poisoning member."""

from __future__ import annotations

import json

import pytest
import torch

from fedledger.fl import load_dataset, partition
from fedledger.fl.experiment import ASSIGNMENTS, _round_updates, assign_rates, rates_for
from fedledger.fl.models import default_spec, initial_global_state
from fedledger.fl.submodel import extract_with_map
from fedledger.fl.training import TrainConfig


@pytest.fixture(scope="module")
def shards():
    return partition(load_dataset("digits"), 5, "dirichlet", 0.1, seed=2, val_fraction=0.15)


def test_width_follows_or_opposes_data_volume(shards):
    sizes = [len(s.train) for s in shards]
    rates = (1.0, 0.5, 0.5, 0.25, 0.125)
    by_volume = assign_rates(shards, rates, "by_volume", 0)
    against = assign_rates(shards, rates, "against_volume", 0)
    largest, smallest = sizes.index(max(sizes)), sizes.index(min(sizes))
    assert by_volume[largest] == 1.0 and by_volume[smallest] == 0.125
    assert against[largest] == 0.125 and against[smallest] == 1.0
    for assignment in ASSIGNMENTS:
        assert sorted(assign_rates(shards, rates, assignment, 0)) == sorted(rates)
    randoms = {assign_rates(shards, rates, "random", seed) for seed in range(6)}
    assert len(randoms) > 1 and assign_rates(shards, rates, "random", 3) == assign_rates(shards, rates, "random", 3)
    with pytest.raises(ValueError, match="assignment must be one of"):
        assign_rates(shards, rates, "by_size", 0)


def test_twenty_institutions_use_heterofl_tiers_evenly():
    rates = rates_for(20)
    assert len(rates) == 20 and {rates.count(r) for r in set(rates)} == {4}
    assert sorted(set(rates)) == [0.0625, 0.125, 0.25, 0.5, 1.0]
    assert rates_for(5) == (1.0, 0.5, 0.5, 0.25, 0.125)


def test_poisoning_member_sends_scaled_flipped_update(shards):
    spec = default_spec((1, 8, 8), 10)
    g = initial_global_state(spec, 0)
    rates = (0.5, 1.0, 0.5, 0.25, 0.125)
    train = TrainConfig(epochs=1, batch_size=32, lr=0.05)
    honest = list(_round_updates(g, spec, shards, rates, "rolling", 0, train, 0))
    poisoned = list(_round_updates(g, spec, shards, rates, "rolling", 0, train, 0, poison_scale=-4.0))
    for i, (h, p) in enumerate(zip(honest, poisoned, strict=True)):
        if i != 1:  # only the widest member attacks
            assert all(torch.equal(h.state[n], p.state[n]) for n in h.state)
            continue
        base = extract_with_map(g, h.index_map)
        name = "head.weight"
        assert torch.allclose(p.state[name] - base[name], -4.0 * (h.state[name] - base[name]), atol=1e-5)


def test_cached_runs_are_reused_and_keyed_by_what_decides_them(tmp_path):
    from dataclasses import replace

    from fedledger.fl.experiment import ExperimentConfig, Setting, default_train, run_experiment

    setting = Setting("breast_cancer", "iid", None, 5)
    config = ExperimentConfig((setting,), seeds=(0,), rounds=2, train=default_train(1), methods=("fedavg_full",))
    first = run_experiment(config, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.json")
    planted = [{"accuracy": 0.123, "macro_f1": 0.5, "val_accuracy": 0.5}] * 2
    cached.write_text(json.dumps(planted))
    again = run_experiment(config, cache_dir=tmp_path)
    assert again["settings"][0]["methods"]["fedavg_full"]["histories"] == [planted]
    assert first["settings"][0]["methods"]["fedavg_full"]["histories"] != [planted]
    run_experiment(replace(config, rounds=3), cache_dir=tmp_path)  # another config: another file
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_fjord_and_momentum_methods_change_the_run_and_are_named():
    from fedledger.fl.experiment import METHOD_LABELS, ExperimentConfig, Setting, default_train, run_experiment

    setting = Setting("digits", "dirichlet", 1.0, 5)
    methods = ("alignment_static", "alignment_static_fjord", "alignment_static_momentum")
    baselines = ("fedavg_full", "fedavg_full_momentum")
    config = ExperimentConfig((setting,), seeds=(0,), rounds=3, train=default_train(1), methods=methods + baselines)
    runs = run_experiment(config)["settings"][0]["methods"]
    full, full_momentum = (runs[m]["histories"][0][-1] for m in baselines)
    assert full != full_momentum  # the homogeneous baseline can carry the same server momentum
    finals = [runs[m]["histories"][0][-1]["val_accuracy"] for m in methods]
    firsts = [runs[m]["histories"][0][0]["val_accuracy"] for m in methods]
    assert len(set(finals)) == 3  # each option changes the run
    assert firsts[0] == firsts[2]  # momentum has no history in round 1: plain alignment
    assert METHOD_LABELS["alignment_static_fjord_momentum"] == "alignment, static + FjORD + momentum"
