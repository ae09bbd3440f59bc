"""Local DP-SGD: noise of the planned scale is really added, runs repeat per seed, and the accountant's
epsilon for the recorded parameters is Opacus's own; bad parameters and statements are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant

from fedledger.dp.accountant import ORDERS
from fedledger.dp.errors import DPParameterError
from fedledger.dp.local import LocalDPRound, calibrate_noise, local_epsilon
from fedledger.fl import ModelSpec, TrainConfig, extract_submodel, initial_global_state, load_dataset, partition
from fedledger.fl.training import train_local

SPEC = ModelSpec("mlp", (30,), 2, (16, 8))


@pytest.fixture(scope="module")
def shard():
    return partition(load_dataset("breast_cancer"), 3, "iid", seed=0)[0]


def _train(shard, **options):
    sub, _ = extract_submodel(initial_global_state(SPEC, 0), SPEC, 0.5, "rolling", 3)
    config = TrainConfig(**{"epochs": 1, "seed": 3, **options})
    return train_local(SPEC, sub, 0.5, shard.train, config)


def _flat(state) -> np.ndarray:
    return np.concatenate([t.numpy().ravel() for _, t in sorted(state.items())])


def test_dp_sgd_differs_from_plain_training_and_repeats_per_seed(shard):
    plain, _, _ = _train(shard)
    dp_a, n, metrics = _train(shard, dp_noise_multiplier=1.0, dp_seed=7)
    dp_b, _, _ = _train(shard, dp_noise_multiplier=1.0, dp_seed=7)
    fresh, _, _ = _train(shard, dp_noise_multiplier=1.0)  # no seed: sampling and noise from the OS
    assert n == len(shard.train)
    assert np.array_equal(_flat(dp_a), _flat(dp_b))
    assert not np.array_equal(_flat(dp_a), _flat(plain))
    assert not np.array_equal(_flat(dp_a), _flat(fresh))
    assert metrics["sample_rate"] == 32 / len(shard.train)
    assert metrics["steps"] == round(len(shard.train) / 32)


def test_the_added_noise_has_the_planned_standard_deviation(shard):
    # One full-batch step (q = 1) of plain SGD: the update is -lr * (sum of clipped gradients + N(0, (zC)^2)) / n,
    # so two runs that differ only in the noise differ by lr * z * C / n * sqrt(2) per coordinate in std.
    n, z, clip, lr = len(shard.train), 50.0, 1.0, 0.05
    options = {"batch_size": n, "lr": lr, "momentum": 0.0, "dp_noise_multiplier": z, "dp_max_grad_norm": clip}
    a, _, m = _train(shard, **options, dp_seed=1)
    b, _, _ = _train(shard, **options, dp_seed=2)
    assert (m["sample_rate"], m["steps"]) == (1.0, 1.0)
    spread = np.std(_flat(a) - _flat(b)) / math.sqrt(2)
    assert spread == pytest.approx(lr * z * clip / n, rel=0.15)


def test_recorded_parameters_give_opacus_own_rdp_epsilon(shard):
    _, _, metrics = _train(shard, dp_noise_multiplier=1.1, dp_seed=0, epochs=2)
    recorded = LocalDPRound(1.1, 1.0, metrics["sample_rate"], int(metrics["steps"]), 1e-5)
    opacus = RDPAccountant()
    opacus.history = [(1.1, recorded.sample_rate, recorded.steps)] * 3  # three rounds of this training
    ours = local_epsilon([recorded] * 3)
    assert ours == pytest.approx(opacus.get_epsilon(1e-5, alphas=list(ORDERS)), rel=1e-9)
    assert ours <= opacus.get_epsilon(1e-5) + 1e-9  # Opacus's default grid is coarser: never tighter
    assert recorded.epsilon() < ours


def test_calibrated_noise_spends_at_most_the_target_and_barely_less():
    z = calibrate_noise(8.0, rounds=5, sample_rate=0.2, steps=5, delta=1e-5)
    planned = [LocalDPRound(z, 1.0, 0.2, 5, 1e-5)] * 5
    assert 7.9 < local_epsilon(planned) <= 8.0
    assert local_epsilon([LocalDPRound(z - 0.01, 1.0, 0.2, 5, 1e-5)] * 5) > 8.0


def test_statement_round_trips_exactly_and_fits_the_ledger():
    params = LocalDPRound(1.2345678901234567, 0.75, 32 / 152, 5, 1e-5)
    text = params.statement()
    assert LocalDPRound.from_statement(text) == params
    assert len(text.encode()) <= 256  # the contract's MAX_TEXT_LENGTH for an access record's purpose


@pytest.mark.parametrize(
    "text",
    [
        "train round 3",
        'local-dp/1 {"z":1,"C":1,"q":0.5,"T":5}',
        'local-dp/1 {"z":1,"C":1,"q":0.5,"T":5,"d":1e-5,"x":0}',
        'local-dp/1 {"z":NaN,"C":1,"q":0.5,"T":5,"d":1e-5}',
        'local-dp/1 {"z":1,"C":1,"q":1.5,"T":5,"d":1e-5}',
        'local-dp/1 {"z":1,"C":1,"q":0.5,"T":true,"d":1e-5}',
        'local-dp/1 {"z":1,"C":1,"q":0.5,"T":5.5,"d":1e-5}',
        'local-dp/1 {"z":"1","C":1,"q":0.5,"T":5,"d":1e-5}',
        'local-dp/1 {"z":1,"C":1,"q":0.5,"T":5,"d":0}',
        "local-dp/1 [1,2]",
        "local-dp/1 {",
    ],
)
def test_malformed_statements_are_refused_with_a_reason(text):
    with pytest.raises(DPParameterError):
        LocalDPRound.from_statement(text)


def test_dp_sgd_refuses_what_per_record_clipping_cannot_train():
    with pytest.raises(ValueError, match="nested widths or a proximal term"):
        TrainConfig(dp_noise_multiplier=1.0, nested_rates=(0.5,))
    with pytest.raises(ValueError, match="dp_max_grad_norm"):
        TrainConfig(dp_noise_multiplier=1.0, dp_max_grad_norm=0.0)
    with pytest.raises(ValueError, match="dp_noise_multiplier"):
        TrainConfig(dp_noise_multiplier=float("nan"))


def test_plain_training_is_untouched_by_the_dp_options(shard):
    plain, _, m = _train(shard)
    ignored, _, _ = _train(shard, dp_max_grad_norm=0.1, dp_seed=9)  # no noise multiplier: no DP-SGD
    assert all(torch.equal(plain[k], ignored[k]) for k in plain)
    assert "sample_rate" not in m
