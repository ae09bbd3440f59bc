"""The institution's CLI against a real chain and store: init, status, train, submit, bad input."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.driver import open_first_round
from demo.in_process import InProcessConsortium
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app
from node.config import load_config

runner = CliRunner()


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    with LocalChain("anvil") as chain:
        c = InProcessConsortium.create(tmp_path_factory.mktemp("node-cli"), chain)
        open_first_round(c.aggregator_context())
        yield c


def _init_args(c: InProcessConsortium, home: Path, new_password: Path) -> list[str]:
    source = c.layout.node_dirs[0]
    kgc = c.layout.root / "kgc"
    return [
        "node",
        "init",
        "--home",
        str(home),
        "--name",
        "hospital-1",
        "--sm9-identity",
        "inst:hospital-1",
        "--width-rate",
        "0.5",
        "--rpc-url",
        c.nodes[0].ledger.w3.provider.endpoint_uri,  # type: ignore[attr-defined]
        "--contract",
        c.layout.deployment.address,
        "--aggregator-url",
        c.layout.aggregator_url,
        "--sm9-key",
        str(source / "keys" / "sm9-sign-key.json"),
        "--share",
        str(source / "keys" / "consortium-share.json"),
        "--eth-key",
        str(source / "keys" / "eth-key.json"),
        "--master-public-key",
        str(kgc / "sign_master_public.pem"),
        "--threshold-public",
        str(kgc / "threshold_public.json"),
        "--consortium",
        str(kgc / "consortium.json"),
        "--data-source",
        "digits",
        "--partitions",
        "5",
        "--index",
        "0",
        "--scheme",
        "dirichlet",
        "--store",
        c.layout.store_spec,
        "--kgc-password-file",
        str(source / "password"),
        "--eth-key-password-file",
        str(source / "password"),
        "--password-file",
        str(new_password),
    ]


def test_init_train_submit_status(consortium: InProcessConsortium, tmp_path: Path) -> None:
    c = consortium
    home = tmp_path / "node"
    password = tmp_path / "pw"
    password.write_text("a new node password\n")
    result = runner.invoke(app, _init_args(c, home, password))
    assert result.exit_code == 0, result.output
    config, _ = load_config(home)
    assert config.width_rate == 0.5 and config.data.scheme == "dirichlet"
    for secret in ("eth-key.json", "sm9-sign-key.json", "consortium-share.json"):
        assert stat.S_IMODE((home / "keys" / secret).stat().st_mode) == 0o600, secret
    key_hex = bytes(c.nodes[0].account.key).hex()
    assert key_hex not in result.output

    trained = runner.invoke(app, ["node", "train", "-c", str(home), "--password-file", str(password)])
    assert trained.exit_code == 0, trained.output
    assert (home / "state" / "round-0" / "update.safetensors").exists()
    assert not c.nodes[0].ledger.has_submitted(0, c.nodes[0].account.address)

    submitted = runner.invoke(app, ["node", "submit", "-c", str(home), "--password-file", str(password)])
    assert submitted.exit_code == 0, submitted.output
    events = c.nodes[0].ledger.updates_submitted(round=0, institution=c.nodes[0].account.address)
    assert len(events) == 1 and events[0].width_rate_ppm == 500_000

    again = runner.invoke(app, ["node", "submit", "-c", str(home), "--password-file", str(password)])
    assert again.exit_code == 0 and "already submitted" in again.output
    status = runner.invoke(app, ["node", "status", "-c", str(home), "--password-file", str(password)])
    assert status.exit_code == 0 and events[0].cid in status.output
    assert key_hex not in trained.output + submitted.output + status.output


def test_wrong_password_and_bad_config_are_clear_errors(consortium: InProcessConsortium, tmp_path: Path) -> None:
    home = consortium.layout.node_dirs[1]
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    result = runner.invoke(app, ["node", "status", "-c", str(home), "--password-file", str(wrong)])
    assert result.exit_code == 2
    assert "wrong password" in result.output and "Traceback" not in result.output

    bad = tmp_path / "node.toml"
    bad.write_text((home / "node.toml").read_text().replace("width_rate = 0.5", "width_rate = 1.5"))
    result = runner.invoke(app, ["node", "status", "-c", str(bad), "--password-file", str(home / "password")])
    assert result.exit_code == 2 and "width_rate" in result.output

    missing = runner.invoke(app, ["node", "status", "-c", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no config at" in missing.output


def test_init_refuses_unreadable_kgc_files(consortium: InProcessConsortium, tmp_path: Path) -> None:
    password = tmp_path / "pw"
    password.write_text("pw\n")
    args = _init_args(consortium, tmp_path / "node", password)
    args[args.index("--sm9-key") + 1] = str(tmp_path / "missing.json")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "missing.json" in result.output
    assert not (tmp_path / "node").exists()  # bad input changes nothing


def test_init_refuses_a_share_from_another_consortium_and_an_existing_node(
    consortium: InProcessConsortium, tmp_path: Path
) -> None:
    from fedledger.sm9 import SignMasterKey
    from fedledger.sm9.threshold import split_key

    password = tmp_path / "pw"
    password.write_text("pw\n")
    _, foreign = split_key(SignMasterKey.generate(), "consortium:other", 3, 5)
    foreign.save(tmp_path / "foreign.json")
    args = _init_args(consortium, tmp_path / "node", password)
    args[args.index("--threshold-public") + 1] = str(tmp_path / "foreign.json")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "is a split of 'consortium:other'" in result.output
    assert not (tmp_path / "node").exists()

    home = consortium.layout.node_dirs[2]
    again = runner.invoke(app, _init_args(consortium, home, password))
    assert again.exit_code == 2 and "initialised already" in again.output


def test_timing_settings_keep_their_config_names_into_the_running_node(consortium: InProcessConsortium) -> None:
    from demo.in_process import password_of
    from node.context import build_context

    home = consortium.layout.node_dirs[4]
    config, base = load_config(home)
    timings = {
        "poll_interval": 0.7,
        "http_timeout_seconds": 5.0,
        "rpc_timeout_seconds": 11.0,
        "receipt_timeout_seconds": 13.0,
    }
    ctx = build_context(config.model_copy(update=timings), base, password_of(home))
    assert (ctx.poll_interval, ctx.http_timeout_seconds) == (0.7, 5.0)
    assert ctx.ledger.receipt_timeout_seconds == 13.0
    assert ctx.ledger.w3.provider._request_kwargs["timeout"] == 11.0  # type: ignore[attr-defined]
