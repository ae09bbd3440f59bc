"""`fedledger aggregator init` / `run`: files written safely, bad input refused with a clear message."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from aggregator.config import load_config
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import dev_roles
from fedledger.chain.keyfile import save_eth_key
from fedledger.cli import app
from fedledger.protocol.consortium import Consortium, Member, consortium_identity
from fedledger.sm9 import SignMasterKey
from fedledger.sm9.threshold import split_key

runner = CliRunner()


def _public_files(tmp: Path, deployment: Deployment) -> list[str]:
    """The KGC's public files for ``deployment``'s ledger and the dev aggregator's key, under its password."""
    roles = dev_roles(5)
    master = SignMasterKey.generate()
    master.public_key.save(tmp / "mpk.pem")
    identity = consortium_identity(deployment.chain_id, deployment.address)
    _, public = split_key(master, identity, 3, 5)
    public.save(tmp / "threshold.json")
    members = tuple(
        Member(f"h{i + 1}", spec.address, spec.sm9_id, i + 1) for i, spec in enumerate(deployment.institutions)
    )
    Consortium(deployment.chain_id, deployment.address, identity, 3, members).save(tmp / "roster.json")
    (tmp / "pw").write_text("aggregator password\n")
    save_eth_key(tmp / "aggregator-key.json", roles.aggregator, "aggregator password")
    return [
        "--master-public-key", str(tmp / "mpk.pem"), "--threshold-public", str(tmp / "threshold.json"),
        "--consortium", str(tmp / "roster.json"), "--password-file", str(tmp / "pw"),
        "--eth-key", str(tmp / "aggregator-key.json"),
    ]  # fmt: skip


def _init(home: Path, tmp_path: Path, deployment: Deployment) -> None:
    result = runner.invoke(
        app,
        ["aggregator", "init", "--home", str(home), "--rpc-url", deployment.rpc_url,
         "--contract", deployment.address, "--store", f"local:{tmp_path / 'store'}", "--dataset", "breast_cancer",
         *_public_files(tmp_path, deployment)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_init_writes_a_valid_config_and_a_private_key_file(tmp_path: Path, ledger_deployment: Deployment) -> None:
    home = tmp_path / "agg"
    _init(home, tmp_path, ledger_deployment)
    config, _ = load_config(home)
    assert config.model["family"] == "mlp" and config.model["input_shape"] == [30]
    assert stat.S_IMODE((home / "keys" / "eth-key.json").stat().st_mode) == 0o600


def test_bad_contract_address_and_bad_config_are_clear_errors(tmp_path: Path, ledger_deployment: Deployment) -> None:
    result = runner.invoke(
        app,
        ["aggregator", "init", "--home", str(tmp_path / "agg"), "--rpc-url", ledger_deployment.rpc_url,
         "--contract", "0x1234", "--store", "local:x", *_public_files(tmp_path, ledger_deployment)],
    )  # fmt: skip
    assert result.exit_code == 2 and "contract" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "agg").exists()  # bad input changes nothing
    (tmp_path / "aggregator.toml").write_text('rpc_url = "http://x"\nport = 99999\n')
    run = runner.invoke(
        app, ["aggregator", "run", "-c", str(tmp_path / "aggregator.toml"), "--password-file", str(tmp_path / "pw")]
    )
    assert run.exit_code == 2 and "port" in run.output and "contract" in run.output


def test_timing_settings_keep_their_config_names_down_to_the_signing_session(
    tmp_path: Path, ledger_deployment: Deployment
) -> None:
    from aggregator.config import save_config
    from aggregator.context import build_context
    from aggregator.driver import new_session
    from aggregator.http_api import SessionBoard
    from fedledger.protocol import RoundRecord

    home = tmp_path / "agg"
    _init(home, tmp_path, ledger_deployment)
    config, base = load_config(home)
    timings = {
        "round_deadline_seconds": 41.0,
        "session_timeout_seconds": 42.0,
        "signing_grace_seconds": 7.5,
        "partial_timeout_seconds": 9.0,
        "rpc_timeout_seconds": 11.0,
        "receipt_timeout_seconds": 13.0,
    }
    save_config(config.model_copy(update={**timings, "aggregation_rule": "median"}), home)
    config, base = load_config(home)
    ctx = build_context(config, base, "aggregator password", SessionBoard())
    assert ctx.aggregation_rule == "median"  # what the driver hands the round pipeline as the rule's name
    for name in (
        "round_deadline_seconds",
        "session_timeout_seconds",
        "signing_grace_seconds",
        "partial_timeout_seconds",
    ):
        assert getattr(ctx, name) == timings[name], name
    assert ctx.ledger.receipt_timeout_seconds == 13.0
    assert ctx.ledger.w3.provider._request_kwargs["timeout"] == 11.0  # type: ignore[attr-defined]
    record = RoundRecord(1, "0x" + "ab" * 20, 0, bytes(32), "QmX", bytes(32), bytes(32), "QmM", bytes(32), 0)
    session = new_session(ctx, record, [])
    assert (session.signing_grace_seconds, session.partial_timeout_seconds) == (7.5, 9.0)


def _refused_by_name(tmp_path: Path, setting: str, field: str) -> None:
    """A config with ``setting`` makes `aggregator run` exit 2 with a message naming ``field``."""
    (tmp_path / "aggregator.toml").write_text(
        f'rpc_url = "http://x"\ncontract = "0x{"ab" * 20}"\nstore = "local:x"\nmodel = {{}}\n{setting}\n'
    )
    run = runner.invoke(app, ["aggregator", "run", "-c", str(tmp_path / "aggregator.toml")])
    assert run.exit_code == 2 and field in run.output and "Traceback" not in run.output


def test_an_unknown_aggregation_rule_is_refused_by_name(tmp_path: Path) -> None:
    _refused_by_name(tmp_path, 'aggregation_rule = "mean"', "aggregation_rule")


def test_a_timing_setting_out_of_range_is_refused_by_name(tmp_path: Path) -> None:
    _refused_by_name(tmp_path, "signing_grace_seconds = 0", "signing_grace_seconds")


def test_a_damaged_public_key_file_is_one_line_not_a_traceback(tmp_path: Path, ledger_deployment: Deployment) -> None:
    home = tmp_path / "agg"
    _init(home, tmp_path, ledger_deployment)
    damaged = next((home / "keys").glob("*.pem"))
    damaged.write_text("-----BEGIN SM9 SIGN MASTER PUBLIC KEY-----\nnot base64\n")
    run = runner.invoke(app, ["aggregator", "run", "-c", str(home), "--password-file", str(tmp_path / "pw")])
    assert run.exit_code == 2 and "Traceback" not in run.output, run.output
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1
