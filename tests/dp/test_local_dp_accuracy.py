"""The accuracy harness's local DP-SGD row: every hospital's calibrated noise spends at most the target
record-level epsilon over the run, and a run trains through DP-SGD (not plain training)."""

from __future__ import annotations

from fedledger.dp.accuracy import Run, local_dp_noise, run_one
from fedledger.dp.local import local_epsilon
from fedledger.fl.data import load_dataset, partition
from fedledger.fl.experiment import VAL_FRACTION, default_train


def test_each_hospital_spends_at_most_the_target_over_the_run() -> None:
    run = Run(seed=0, rounds=50, local_epsilon=8.0)
    shards = partition(load_dataset("digits"), 5, "dirichlet", 1.0, seed=0, val_fraction=VAL_FRACTION, min_train=4)
    plans = local_dp_noise(run, shards, default_train(1))
    assert len({p.sample_rate for p in plans.values()}) > 1  # hospitals differ in size, so in q and z
    for params in plans.values():
        assert 7.9 < local_epsilon([params] * 50) <= 8.0


def test_a_local_dp_run_differs_from_plain_and_reports_its_spend() -> None:
    plain = run_one(Run(seed=0, rounds=1))
    local = run_one(Run(seed=0, rounds=1, local_epsilon=8.0))
    assert local["method"].startswith("local DP-SGD ε=8")
    assert local["history"] != plain["history"]
    assert 7.9 < local["spent_epsilon"] <= 8.0
    assert Run(seed=0, rounds=1, plain_loss=True).method == "plain alignment without logit adjustment"
