"""The kgc / sm9 command groups end to end on real files (typer's runner, the real root app)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.cli import app
from fedledger.sm9 import Signature, SignMasterPublicKey, verify

ENV = {"FEDLEDGER_KEY_PASSWORD": "cli-test-password"}


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def _ok(runner: CliRunner, args: list[str], code: int = 0, env: dict | None = None) -> str:
    result = runner.invoke(app, args, env=ENV if env is None else env)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_kgc_setup_extract_sign_verify_round_trip(runner: CliRunner, tmp_path: Path) -> None:
    kgc = tmp_path / "kgc"
    _ok(runner, ["kgc", "setup", "--out", str(kgc)])
    key_file = kgc / "sign_master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = kgc / "sign_master_public.pem"
    assert pem.read_text().startswith("-----BEGIN SM9 SIGN MASTER PUBLIC KEY-----")
    _ok(runner, ["kgc", "setup", "--out", str(kgc)], code=2)  # refuses to overwrite
    user_key = tmp_path / "alpha.key"
    _ok(runner, ["kgc", "extract", "--id", "inst:alpha", "--master", str(key_file), "--out", str(user_key)])
    assert stat.S_IMODE(user_key.stat().st_mode) == 0o600
    message = tmp_path / "entry.bin"
    message.write_bytes(b"round 1 update entry")
    sig = tmp_path / "entry.sig"
    transport = ["--password-file", str(tmp_path / "alpha.key.password")]  # issued for inst:alpha alone
    _ok(runner, ["sm9", "sign", "--key", str(user_key), "--in", str(message), "--out", str(sig), *transport])
    assert len(sig.read_bytes()) == 104
    verify_args = ["sm9", "verify", "--master-public-key", str(pem), "--in", str(message), "--sig", str(sig)]
    assert "valid" in _ok(runner, [*verify_args, "--id", "inst:alpha"])
    _ok(runner, [*verify_args, "--id", "inst:beta"], code=1)
    message.write_bytes(b"tampered")
    _ok(runner, [*verify_args, "--id", "inst:alpha"], code=1)
    sig.write_bytes(b"not a signature")
    out = _ok(runner, [*verify_args, "--id", "inst:alpha"], code=2)
    assert "104 bytes" in out
    _ok(
        runner,
        [
            "sm9",
            "verify",
            "--master-public-key",
            str(message),
            "--id",
            "x",
            "--in",
            str(message),
            "--sig",
            str(sig),
        ],
        code=2,
    )
    # wrong password and no password: exit 2 with a message, no traceback
    out = _ok(
        runner,
        ["sm9", "sign", "--key", str(user_key), "--in", str(message), "--out", str(sig)],
        code=2,
        env={"FEDLEDGER_KEY_PASSWORD": "nope"},
    )
    assert "wrong password" in out and "Traceback" not in out
    password_file = tmp_path / "pw.txt"
    password_file.write_text("cli-test-password\n")  # the master password opens the master key only
    sign_args = ["sm9", "sign", "--key", str(user_key), "--in", str(message), "--out", str(sig)]
    assert "wrong password" in _ok(runner, [*sign_args, "--password-file", str(password_file)], code=2, env={})
    _ok(runner, [*sign_args, *transport], env={})


def test_kgc_split_and_threshold_sign(runner: CliRunner, tmp_path: Path) -> None:
    kgc = tmp_path / "kgc"
    _ok(runner, ["kgc", "setup", "--out", str(kgc)])
    shares_dir = tmp_path / "shares"
    identity = "consortium:31337:0x5FbDB2315678afecb367f032d93F642f64180aa3"
    _ok(
        runner,
        [
            "kgc",
            "split",
            "--id",
            identity,
            "-k",
            "3",
            "-n",
            "5",
            "--out",
            str(shares_dir),
            "--master",
            str(kgc / "sign_master.key"),
        ],
    )
    share_files = sorted(shares_dir.glob("share-*.key"))
    assert len(share_files) == 5
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in share_files)
    public = json.loads((shares_dir / "threshold_public.json").read_text())
    assert (public["k"], public["n"]) == (3, 5) and sorted(public["verification"]) == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]
    message = tmp_path / "record.json"
    message.write_bytes(b'{"round": 3}')
    sig = tmp_path / "record.sig"
    picks = [shares_dir / "share-4.key", shares_dir / "share-1.key", shares_dir / "share-5.key"]
    args = ["sm9", "threshold-sign", "--in", str(message), "--out", str(sig)]
    _ok(runner, [*args, *[x for p in picks for x in ("--share", str(p))]])
    mpk = SignMasterPublicKey.load(kgc / "sign_master_public.pem")
    canonical = identity.lower()  # the contract address inside a consortium identity is case-free
    assert verify(mpk, canonical, message.read_bytes(), Signature.from_der(sig.read_bytes()))
    out = _ok(runner, [*args, *[x for p in picks[:2] for x in ("--share", str(p))]], code=2)
    assert "at least k=3" in out
    _ok(
        runner,
        [
            "kgc",
            "split",
            "--id",
            identity,
            "-k",
            "6",
            "-n",
            "5",
            "--out",
            str(tmp_path / "x"),
            "--master",
            str(kgc / "sign_master.key"),
        ],
        code=2,
    )
