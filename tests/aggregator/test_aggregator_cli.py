"""`fedledger aggregator init` / `run`: files written safely, bad input refused with a clear message."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from aggregator.config import load_config
from fedledger.cli import app
from fedledger.protocol.consortium import Consortium, Member
from fedledger.sm9 import SignMasterKey
from fedledger.sm9.threshold import split_key

runner = CliRunner()


def _public_files(tmp: Path) -> list[str]:
    master = SignMasterKey.generate()
    master.public_key.save(tmp / "mpk.pem")
    _, public = split_key(master, "consortium:1:0xabc", 2, 3)
    public.save(tmp / "threshold.json")
    Consortium(1, "0x" + "ab" * 20, "consortium:1:0xabc", 2, (Member("h1", "0x" + "01" * 20, "inst:h1", 1),)).save(
        tmp / "roster.json"
    )
    (tmp / "pw").write_text("aggregator password\n")
    return [
        "--master-public-key", str(tmp / "mpk.pem"), "--threshold-public", str(tmp / "threshold.json"),
        "--consortium", str(tmp / "roster.json"), "--password-file", str(tmp / "pw"),
    ]  # fmt: skip


def test_init_writes_a_valid_config_and_a_private_key_file(tmp_path: Path) -> None:
    home = tmp_path / "agg"
    result = runner.invoke(
        app,
        ["aggregator", "init", "--home", str(home), "--rpc-url", "http://127.0.0.1:8545",
         "--contract", "0x" + "ab" * 20, "--store", f"local:{tmp_path / 'store'}", "--dataset", "breast_cancer",
         *_public_files(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config, _ = load_config(home)
    assert config.model["family"] == "mlp" and config.model["input_shape"] == [30]
    assert stat.S_IMODE((home / "keys" / "eth-key.json").stat().st_mode) == 0o600


def test_bad_contract_address_and_bad_config_are_clear_errors(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["aggregator", "init", "--home", str(tmp_path / "agg"), "--rpc-url", "http://127.0.0.1:8545",
         "--contract", "0x1234", "--store", "local:x", *_public_files(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 2 and "contract" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "agg").exists()  # bad input changes nothing
    (tmp_path / "aggregator.toml").write_text('rpc_url = "http://x"\nport = 99999\n')
    run = runner.invoke(
        app, ["aggregator", "run", "-c", str(tmp_path / "aggregator.toml"), "--password-file", str(tmp_path / "pw")]
    )
    assert run.exit_code == 2 and "port" in run.output and "contract" in run.output
