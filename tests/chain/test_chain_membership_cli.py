"""Membership changes from the command line: k institutions approve offline, anyone applies."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.keyfile import save_eth_key
from fedledger.cli import app

runner = CliRunner()


def _keystores(roles: DevRoles, tmp: Path) -> list[Path]:
    (tmp / "pw").write_text("keystore password\n")
    paths = []
    for i, account in enumerate(roles.institutions):
        path = tmp / f"inst-{i}.json"
        save_eth_key(path, account, "keystore password")
        paths.append(path)
    return paths


def _flags(approvals: list[str]) -> list[str]:
    return [part for a in approvals for part in ("--approval", a)]


def _approve(deployment_file: Path, keystore: Path, pw: Path, *change: str) -> str:
    result = runner.invoke(
        app,
        ["chain", "approve-change", "--deployment-file", str(deployment_file), "--keystore", str(keystore),
         "--password-file", str(pw), *change],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def test_adding_an_institution_needs_k_approvals(
    ledger_deployment: Deployment, ledger: LedgerClient, dev_accounts: DevRoles, tmp_path: Path
) -> None:
    deployment_file = ledger_deployment.save(tmp_path / "deployment.json")
    keystores = _keystores(dev_accounts, tmp_path)
    pw = tmp_path / "pw"
    newcomer = dev_accounts.outsider.address
    change = ["--action", "add", "--account", newcomer, "--sm9-id", "inst:newcomer"]
    approvals = [_approve(deployment_file, ks, pw, *change) for ks in keystores[:3]]
    apply = ["chain", "apply-change", "--deployment-file", str(deployment_file), "--keystore", str(keystores[0]),
             "--password-file", str(pw), *change]  # fmt: skip

    too_few = runner.invoke(app, [*apply, *_flags(approvals[:2])])
    assert too_few.exit_code == 1 and "NotEnoughApprovals" in too_few.output
    assert not ledger.institution(newcomer).active

    done = runner.invoke(app, [*apply, *_flags(approvals)])
    assert done.exit_code == 0, done.output
    assert ledger.institution(newcomer).active and ledger.institution(newcomer).sm9_id == "inst:newcomer"

    replay = runner.invoke(app, [*apply, *_flags(approvals)])
    assert replay.exit_code == 1  # the nonce moved on: the same approvals cannot be used again


def test_bad_membership_input_is_a_clear_error(ledger_deployment: Deployment, tmp_path: Path) -> None:
    deployment_file = ledger_deployment.save(tmp_path / "deployment.json")
    (tmp_path / "pw").write_text("x\n")
    base = ["chain", "approve-change", "--deployment-file", str(deployment_file), "--keystore",
            str(tmp_path / "missing.json"), "--password-file", str(tmp_path / "pw")]  # fmt: skip
    for args, message in (
        (["--action", "promote"], "--action must be one of"),
        (["--action", "add", "--account", "0x1234"], "needs --account"),
        (["--action", "add", "--account", "0x" + "12" * 20], "needs --sm9-id"),
        (["--action", "threshold"], "needs --threshold"),
        (["--action", "remove", "--account", "0x" + "12" * 20], "no Ethereum key file"),
    ):
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2 and message in result.output, (args, result.output)
