"""The privacy budget from the command line: set at deployment, changed by k offline approvals."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fedledger.chain.approvals import PrivacyBudgetSetting
from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.keyfile import save_eth_key
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app

runner = CliRunner()


def test_deploy_with_a_budget_and_status_shows_it(anvil_chain: LocalChain, tmp_path: Path) -> None:
    out = tmp_path / "deployment.json"
    result = runner.invoke(
        app,
        ["chain", "deploy", "--rpc-url", anvil_chain.rpc_url, "--dev", "--deployment-file", str(out),
         "--dp-epsilon", "8", "--dp-delta", "1e-5"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert Deployment.load(out).privacy_budget == PrivacyBudgetSetting(8_000_000, 10_000_000)
    status = runner.invoke(app, ["chain", "status", "--deployment-file", str(out), "--json"])
    assert json.loads(status.output)["privacy_budget"] == {"epsilon": 8.0, "delta": 1e-5}

    bad = runner.invoke(
        app, ["chain", "deploy", "--rpc-url", anvil_chain.rpc_url, "--dev", "--dp-epsilon", "8", "--dp-delta", "2"]
    )
    assert bad.exit_code != 0 and "privacy budget needs" in bad.output


def test_budget_change_needs_k_approvals(
    ledger_deployment: Deployment, ledger: LedgerClient, dev_accounts: DevRoles, tmp_path: Path
) -> None:
    deployment_file = ledger_deployment.save(tmp_path / "deployment.json")
    (tmp_path / "pw").write_text("keystore password\n")
    keystores = [tmp_path / f"inst-{i}.json" for i in range(3)]
    for keystore, account in zip(keystores, dev_accounts.institutions, strict=False):
        save_eth_key(keystore, account, "keystore password")
    change = ["--action", "privacy-budget", "--dp-epsilon", "4", "--dp-delta", "1e-6"]
    common = ["--deployment-file", str(deployment_file), "--password-file", str(tmp_path / "pw")]
    approvals = []
    for keystore in keystores:
        result = runner.invoke(app, ["chain", "approve-change", *common, "--keystore", str(keystore), *change])
        assert result.exit_code == 0, result.output
        approvals.append(result.output.strip().splitlines()[-1])
    apply = ["chain", "apply-change", *common, "--keystore", str(keystores[0]), *change]
    too_few = runner.invoke(app, [*apply, "--approval", approvals[0], "--approval", approvals[1]])
    assert too_few.exit_code == 1 and "NotEnoughApprovals" in too_few.output
    assert not ledger.privacy_budget().is_set
    done = runner.invoke(app, [*apply, *[p for a in approvals for p in ("--approval", a)]])
    assert done.exit_code == 0, done.output
    assert ledger.privacy_budget() == PrivacyBudgetSetting.of(4.0, 1e-6)
    missing = runner.invoke(app, ["chain", "approve-change", *common, "--keystore", str(keystores[0]),
                                  "--action", "privacy-budget"])  # fmt: skip
    assert missing.exit_code != 0 and "needs --dp-epsilon" in missing.output
