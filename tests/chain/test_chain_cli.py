"""``fedledger chain ...`` and ``fedledger bench chain`` as a user runs them (real processes, real chains)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner

from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app

FEDLEDGER = [str(Path(sys.executable).with_name("fedledger"))]  # the console script of this venv
runner = CliRunner()


def _dev_key_hex(account: LocalAccount) -> str:
    return bytes(account.key).hex()


def _no_keys_in(text: str, roles: DevRoles) -> None:
    for account in (roles.deployer, roles.aggregator, *roles.institutions, roles.outsider):
        assert _dev_key_hex(account) not in text.lower()


def test_deploy_then_status(anvil_chain: LocalChain, tmp_path: Path, dev_accounts: DevRoles) -> None:
    deployment_file = tmp_path / "deployment.json"
    result = runner.invoke(
        app,
        [
            "chain",
            "deploy",
            "--rpc-url",
            anvil_chain.rpc_url,
            "--dev",
            "--deployment-file",
            str(deployment_file),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads(deployment_file.read_text())
    assert saved["threshold"] == 3 and len(saved["institutions"]) == 5 and saved["abi"]
    assert saved["address"] in result.output
    _no_keys_in(result.output + deployment_file.read_text(), dev_accounts)

    status = runner.invoke(app, ["chain", "status", "--deployment-file", str(deployment_file), "--json"])
    assert status.exit_code == 0, status.output
    data = json.loads(status.output)
    assert data["contract"] == saved["address"] and data["threshold"] == 3
    assert [i["sm9_id"] for i in data["institutions"]] == [f"hospital-{i}" for i in range(1, 6)]
    assert data["round"]["started"] is False and data["last_global_model"] is None
    table = runner.invoke(app, ["chain", "status", "--deployment-file", str(deployment_file)])
    assert table.exit_code == 0 and "3 of 5 active" in table.output


def test_deploy_with_key_file_and_explicit_institutions(
    anvil_chain: LocalChain, tmp_path: Path, dev_accounts: DevRoles
) -> None:
    key_file = tmp_path / "deployer.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, ("0x" + _dev_key_hex(dev_accounts.outsider)).encode())
    os.close(fd)
    args = ["chain", "deploy", "--rpc-url", anvil_chain.rpc_url, "--key-file", str(key_file),
            "--aggregator", dev_accounts.aggregator.address, "-k", "2",
            "--deployment-file", str(tmp_path / "d.json")]  # fmt: skip
    for i, inst in enumerate(dev_accounts.institutions[:3]):
        args += ["--institution", f"{inst.address}=clinic-{i}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 of 3" in result.output
    _no_keys_in(result.output, dev_accounts)


def test_bad_input_exits_2_with_a_message(anvil_chain: LocalChain, tmp_path: Path) -> None:
    cases = [
        (
            ["chain", "deploy", "--rpc-url", anvil_chain.rpc_url, "--dev", "--institution", "nonsense"],
            "ADDRESS=SM9_ID",
        ),
        (["chain", "deploy", "--rpc-url", anvil_chain.rpc_url, "--dev", "-k", "9"], "--threshold"),
        (["chain", "deploy", "--rpc-url", "ftp://x", "--dev"], "http"),
        (["chain", "status", "--deployment-file", str(tmp_path / "missing.json")], "chain up"),
        (["chain", "up", "--kind", "ganache"], "anvil"),
        (["chain", "up", "--threshold", "6"], "--threshold"),
    ]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.output, (args, result.output)
        assert "Traceback" not in result.output
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("0xnot-a-key-but-secret-looking-1234")
    result = runner.invoke(
        app, ["chain", "deploy", "--rpc-url", anvil_chain.rpc_url, "--key-file", str(bad_key), "--dev"]
    )
    assert result.exit_code == 2 and "not-a-key" not in result.output


def test_up_deploys_writes_the_file_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    deployment_file = tmp_path / "up.json"
    state = tmp_path / "anvil-state.json"
    cmd = [*FEDLEDGER, "chain", "up", "--deployment-file", str(deployment_file), "--state", str(state)]

    def run_once() -> dict[str, object]:
        before = deployment_file.stat().st_mtime_ns if deployment_file.exists() else None
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120

            def written() -> bool:
                return deployment_file.exists() and deployment_file.stat().st_mtime_ns != before

            while not written() and time.monotonic() < deadline:
                assert process.poll() is None, process.communicate()
                time.sleep(0.2)
            time.sleep(0.5)
            data = json.loads(deployment_file.read_text())
            status = runner.invoke(app, ["chain", "status", "--deployment-file", str(deployment_file), "--json"])
            assert status.exit_code == 0, status.output
        finally:
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        assert data["rpc_url"] in out and "chain stopped" in out
        return data

    first = run_once()
    second = run_once()  # the saved state still holds the ledger: reused, not redeployed
    assert state.exists()
    assert second["address"] == first["address"] and second["deploy_block"] == first["deploy_block"]


def test_bench_chain_reports_gas_against_targets() -> None:
    result = runner.invoke(app, ["bench", "chain", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["calldata"] == {"cid_chars": 46, "sm9_signature_bytes": 104}
    assert figures["gas"]["plainTransfer"] == 21_000  # the intrinsic cost of a transfer, by definition
    assert figures["targets"]["submitUpdate"]["met"], figures["targets"]
    assert figures["targets"]["postGlobalModel_k3"]["met"], figures["targets"]
    assert figures["gas"]["postGlobalModel_5approvals"] > figures["gas"]["postGlobalModel_k3"]
