"""Local training is deterministic and learns; evaluation metrics match a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedledger.fl import (
    ModelSpec,
    TrainConfig,
    evaluate,
    extract_submodel,
    initial_global_state,
    load_dataset,
    partition,
    train_local,
)


@pytest.fixture(scope="module")
def shard():
    return partition(load_dataset("breast_cancer"), 3, "iid", seed=0)[0]


SPEC = ModelSpec("mlp", (30,), 2, (16, 8))


def _train(shard, seed, rate=0.5, epochs=2, optimizer="sgd"):
    g = initial_global_state(SPEC, 0)
    sub, _ = extract_submodel(g, SPEC, rate, "rolling", 3)
    return train_local(
        SPEC,
        sub,
        rate,
        shard.train,
        TrainConfig(epochs=epochs, seed=seed, optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.05),
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_same_seed_same_result(shard, optimizer):
    a, n_a, m_a = _train(shard, 11, optimizer=optimizer)
    b, n_b, m_b = _train(shard, 11, optimizer=optimizer)
    assert n_a == n_b == len(shard.train)
    assert m_a == m_b
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_different_seed_different_result(shard):
    a, _, _ = _train(shard, 1)
    b, _, _ = _train(shard, 2)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_training_keeps_shapes_and_learns(shard):
    g = initial_global_state(SPEC, 0)
    sub, _ = extract_submodel(g, SPEC, 0.5)
    before = evaluate(SPEC.narrowed(0.5), sub, shard.test.X, shard.test.y)
    new, _, metrics = train_local(SPEC, sub, 0.5, shard.train, TrainConfig(epochs=5, seed=0))
    assert {k: v.shape for k, v in new.items()} == {k: v.shape for k, v in sub.items()}
    after = evaluate(SPEC.narrowed(0.5), new, shard.test.X, shard.test.y)
    assert after["accuracy"] > max(0.85, before["accuracy"])
    assert metrics["steps"] == 5 * int(np.ceil(len(shard.train) / 32))


def test_masking_absent_classes_leaves_their_head_rows_alone():
    data = load_dataset("digits")
    only_3_and_7 = data.subset(np.flatnonzero(np.isin(data.y, [3, 7]))[:60])
    spec = ModelSpec("cnn", (1, 8, 8), 10, (4, 4))
    g = initial_global_state(spec, 0)
    new, _, _ = train_local(
        spec, g, 1.0, only_3_and_7, TrainConfig(epochs=1, seed=0, momentum=0.0, mask_absent_classes=True)
    )
    changed = (new["head.weight"] != g["head.weight"]).any(dim=1)
    assert changed.nonzero().flatten().tolist() == [3, 7]


def _digits_subset(classes, per_class):
    data = load_dataset("digits")
    picks = np.concatenate([np.flatnonzero(data.y == c)[:n] for c, n in zip(classes, per_class, strict=True)])
    return data.subset(np.sort(picks))


def test_logit_adjustment_changes_nothing_when_classes_are_balanced():
    # a constant shift of every logit leaves softmax, loss and gradients as they were
    data = _digits_subset(range(10), [6] * 10)
    spec = ModelSpec("cnn", (1, 8, 8), 10, (4, 4))
    g = initial_global_state(spec, 0)
    plain, _, _ = train_local(spec, g, 1.0, data, TrainConfig(epochs=1, seed=0))
    adjusted, _, _ = train_local(spec, g, 1.0, data, TrainConfig(epochs=1, seed=0, logit_adjustment=1.0))
    assert all(torch.allclose(plain[k], adjusted[k], atol=1e-5) for k in plain)


def test_logit_adjustment_pushes_unseen_classes_down_less():
    data = _digits_subset([3, 7], [40, 20])
    spec = ModelSpec("cnn", (1, 8, 8), 10, (4, 4))
    g = initial_global_state(spec, 0)
    absent = [c for c in range(10) if c not in (3, 7)]

    def drop(tau):
        new, _, _ = train_local(spec, g, 1.0, data, TrainConfig(epochs=1, seed=0, momentum=0.0, logit_adjustment=tau))
        return (g["head.bias"] - new["head.bias"])[absent]

    plain, adjusted = drop(0.0), drop(1.0)
    assert (plain > 0).all() and (adjusted < plain).all()


def test_proximal_term_keeps_the_model_near_its_start(shard):
    g = initial_global_state(SPEC, 0)

    def distance(mu):
        new, _, _ = train_local(SPEC, g, 1.0, shard.train, TrainConfig(epochs=2, seed=0, proximal_mu=mu))
        return sum(float(((new[k] - g[k]) ** 2).sum()) for k in g)

    assert distance(5.0) < 0.5 * distance(0.0)


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError):
        TrainConfig(logit_adjustment=-1.0)
    with pytest.raises(ValueError):
        TrainConfig(proximal_mu=-0.1)


def test_evaluate_matches_hand_computation():
    # identity MLP without norms: predicts argmax of the two (positive) features
    spec = ModelSpec("mlp", (2,), 2, (2,), normalise=False)
    state = {
        "layers.0.weight": torch.eye(2),
        "layers.0.bias": torch.zeros(2),
        "head.weight": torch.eye(2),
        "head.bias": torch.zeros(2),
    }
    X = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1]], dtype=np.float32)  # predictions 0 1 0 0 1
    y = np.array([0, 1, 1, 0, 0])
    # accuracy 3/5. class 0: tp 2, fp 1, fn 1 -> F1 2/3. class 1: tp 1, fp 1, fn 1 -> F1 1/2.
    got = evaluate(spec, state, X, y)
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
