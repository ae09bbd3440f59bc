"""A node's own local DP budget: planned rounds fit, the next is refused (and the refusal kept for
`node status`), a restart (a new reader of the same files) forgets nothing, a broken spend file
stops training instead of starting from zero, and the trained update carries what was counted."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from fedledger.dp.errors import DPParameterError
from fedledger.dp.local import LocalDPRound, local_epsilon
from fedledger.fl import ModelSpec, TrainConfig, initial_global_state, load_dataset, partition, save_global
from node.config import DataConfig, NodeConfig, load_config, save_config
from node.context import local_dp_policy
from node.local_budget import (
    SPEND_FILE,
    LocalBudgetExhausted,
    LocalDPPolicy,
    LocalPrivacySpend,
    LocalSpendUnreadable,
    local_dp_status,
    override_policy,
)
from node.training_step import TrainedUpdate, train_update

POLICY = LocalDPPolicy(epsilon=4.0, delta=1e-5, clip=1.0, rounds=3)


def test_planned_rounds_fit_the_next_is_refused_and_a_restart_remembers(tmp_path: Path) -> None:
    planned = POLICY.round_for(records=150, batch_size=32, epochs=1)
    spend = LocalPrivacySpend(tmp_path, POLICY)
    for r in range(3):
        spend.reserve(r, planned)
    assert 3.9 < spend.spent() <= 4.0
    before = (tmp_path / SPEND_FILE).read_bytes()
    with pytest.raises(LocalBudgetExhausted, match=r"round 3 not trained: .* over its budget 4 "):
        spend.reserve(3, planned)
    assert set(LocalPrivacySpend(tmp_path, POLICY).rounds()) == {0, 1, 2}  # nothing counted for round 3
    assert json.loads((tmp_path / SPEND_FILE).read_text())["rounds"] == json.loads(before)["rounds"]

    restarted = LocalPrivacySpend(tmp_path, POLICY)  # what a restarted node reads
    assert restarted.spent() == spend.spent() and set(restarted.rounds()) == {0, 1, 2}
    with pytest.raises(LocalBudgetExhausted):
        restarted.reserve(4, planned)
    status = local_dp_status(tmp_path)
    assert status is not None and "spent of 4 (delta 1e-05) in 3 round(s)" in status
    assert "round 4 not trained" in status
    assert local_dp_status(tmp_path / "elsewhere") is None  # never used local DP: status says nothing


def test_a_round_trained_again_after_a_crash_is_counted_once(tmp_path: Path) -> None:
    planned = POLICY.round_for(records=150, batch_size=32, epochs=1)
    spend = LocalPrivacySpend(tmp_path, POLICY)
    spend.reserve(0, planned)
    spend.reserve(0, planned)  # the first training never left the node: the retrain replaces it
    assert spend.spent() == pytest.approx(local_epsilon([planned]))


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b'{"rounds": {"0": "train round 0"}}', b'{"rounds": []}', b"[]"]
)
def test_an_unreadable_spend_file_stops_training_rather_than_forgetting(tmp_path: Path, content: bytes) -> None:
    (tmp_path / SPEND_FILE).write_bytes(content)
    planned = POLICY.round_for(records=150, batch_size=32, epochs=1)
    with pytest.raises(LocalSpendUnreadable, match="cannot be read"):
        LocalPrivacySpend(tmp_path, POLICY).reserve(0, planned)
    assert (tmp_path / SPEND_FILE).read_bytes() == content  # unchanged


def test_bad_policies_and_overrides_are_refused_in_one_line() -> None:
    with pytest.raises(DPParameterError):
        LocalDPPolicy(epsilon=0.0)
    with pytest.raises(DPParameterError):
        LocalDPPolicy(epsilon=8.0, rounds=0)
    with pytest.raises(DPParameterError, match="below 1 / 50 training records"):
        LocalDPPolicy(epsilon=8.0, delta=0.05).round_for(records=50, batch_size=8, epochs=1)
    with pytest.raises(DPParameterError, match="needs --local-dp-epsilon"):
        override_policy(None, None, 5)
    assert override_policy(None, None, None) is None
    assert override_policy(POLICY, 8.0, None) == LocalDPPolicy(8.0, 1e-5, 1.0, 3)
    assert override_policy(None, 2.0, 7) == LocalDPPolicy(2.0, rounds=7)


def test_the_trained_update_carries_its_counted_parameters_across_a_restart(tmp_path: Path) -> None:
    spec = ModelSpec("mlp", (30,), 2, (8,))
    base = tmp_path / "base.safetensors"
    digest = save_global(base, initial_global_state(spec, 0), spec)
    data = partition(load_dataset("breast_cancer"), 3, "iid", seed=0)[0].train
    train = TrainConfig(epochs=1, batch_size=32)
    params = POLICY.round_for(len(data), train.batch_size, train.epochs)
    trained, _ = train_update(base, digest, "0xabc", 0, 1.0, "static", data, train, tmp_path / "u.safetensors", params)
    assert trained.local_dp == params
    trained.save_summary(tmp_path / "trained.json", digest)
    assert stat.S_IMODE((tmp_path / "trained.json").stat().st_mode) & 0o022 == 0
    again = TrainedUpdate.load_summary(tmp_path / "trained.json", tmp_path / "u.safetensors", digest)
    assert again == trained and again is not None and again.local_dp == params

    wrong = LocalDPRound(params.noise_multiplier, params.clip, params.sample_rate, params.steps + 1, params.delta)
    with pytest.raises(DPParameterError, match="the budget counted"):
        train_update(base, digest, "0xabc", 0, 1.0, "static", data, train, tmp_path / "v.safetensors", wrong)


def _node_config(**local_dp: object) -> NodeConfig:
    return NodeConfig(
        name="hospital-1", sm9_identity="inst:hospital-1", width_rate=1.0, aggregator_url="https://127.0.0.1:1",
        store="local:store", rpc_url="http://127.0.0.1:1", contract="0x" + "11" * 20,
        data=DataConfig(source="digits"), **local_dp,  # type: ignore[arg-type]
    )  # fmt: skip


def test_node_toml_carries_the_local_dp_policy_and_refuses_bad_values(tmp_path: Path) -> None:
    assert local_dp_policy(_node_config()) is None  # no local_dp_epsilon: plain training
    save_config(_node_config(local_dp_epsilon=8.0, local_dp_rounds=20, local_dp_clip=0.5), tmp_path)
    assert "local_dp_epsilon = 8.0" in (tmp_path / "node.toml").read_text()
    config, _ = load_config(tmp_path)
    assert local_dp_policy(config) == LocalDPPolicy(8.0, 1e-5, 0.5, 20)
    for bad in ({"local_dp_epsilon": -1.0}, {"local_dp_delta": 1.0}, {"local_dp_rounds": 0}, {"local_dp_clip": 0.0}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            _node_config(**bad)
