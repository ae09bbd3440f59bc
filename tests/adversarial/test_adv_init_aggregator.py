"""`aggregator init` and `aggregator run` given a wrong chain, contract, key or split refuse at once
with one line and write nothing (finding 12 of issue #10; identity case, issue #14). Real Anvil."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import dev_roles
from fedledger.chain.keyfile import save_eth_key
from fedledger.cli import app
from fedledger.netutil import free_port
from fedledger.sm9 import SignMasterKey
from fedledger.sm9.threshold import split_key
from tests.aggregator.test_aggregator_cli import _public_files

runner = CliRunner()


def _init(tmp_path: Path, deployment: Deployment, **override: str) -> list[str]:
    options = {
        "--home": str(tmp_path / "agg"),
        "--rpc-url": deployment.rpc_url,
        "--contract": deployment.address,
        "--store": f"local:{tmp_path / 'store'}",
        "--dataset": "breast_cancer",
    }
    options.update({f"--{k.replace('_', '-')}": v for k, v in override.items()})
    return ["aggregator", "init", *(x for pair in options.items() for x in pair), *_public_files(tmp_path, deployment)]


def _refused(args: list[str], tmp_path: Path, *fragments: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert not (tmp_path / "agg").exists(), "a refused init wrote something"


def test_aggregator_init_refuses_an_eoa_and_an_unreachable_chain(tmp_path: Path, ledger_deployment: Deployment) -> None:
    eoa = dev_roles(5).outsider.address
    _refused(_init(tmp_path, ledger_deployment, contract=eoa), tmp_path, f"no contract code at {eoa}")
    url = f"http://127.0.0.1:{free_port()}"
    _refused(_init(tmp_path, ledger_deployment, rpc_url=url), tmp_path, f"cannot reach the chain at {url}")


def test_aggregator_init_refuses_a_key_without_the_aggregator_role(
    tmp_path: Path, ledger_deployment: Deployment
) -> None:
    args = _init(tmp_path, ledger_deployment)
    save_eth_key(tmp_path / "member.json", dev_roles(5).institutions[0], "aggregator password")
    args[args.index("--eth-key") + 1] = str(tmp_path / "member.json")
    _refused(args, tmp_path, f"is not the aggregator of ledger {ledger_deployment.address}")

    without_key = args[: args.index("--eth-key")] + args[args.index("--eth-key") + 2 :]
    _refused(without_key, tmp_path, "no --eth-key", "--new-eth-key")
    made = runner.invoke(app, [*without_key, "--new-eth-key"])
    assert made.exit_code == 0, made.output
    assert "warning: the new Ethereum key" in made.stderr and "approve-change --action aggregator" in made.stderr


def test_aggregator_init_refuses_a_split_of_the_checksummed_identity(
    tmp_path: Path, ledger_deployment: Deployment
) -> None:
    """A split made by hand from the address as printed (mixed case) is not the identity the audit checks."""
    args = _init(tmp_path, ledger_deployment)
    mixed = f"consortium:{ledger_deployment.chain_id}:{ledger_deployment.address}"
    _, public = split_key(SignMasterKey.generate(), mixed, 3, 5)
    public.save(tmp_path / "threshold.json")
    _refused(args, tmp_path, f"--threshold-public is a split of {mixed!r}", "--chain-id")


def test_aggregator_run_on_an_unreachable_chain_is_one_line(tmp_path: Path, ledger_deployment: Deployment) -> None:
    assert runner.invoke(app, _init(tmp_path, ledger_deployment)).exit_code == 0
    config = tmp_path / "agg" / "aggregator.toml"
    url = f"http://127.0.0.1:{free_port()}"
    config.write_text(config.read_text().replace(ledger_deployment.rpc_url, url))
    run = runner.invoke(app, ["aggregator", "run", "-c", str(config), "--password-file", str(tmp_path / "pw")])
    assert run.exit_code == 2 and run.stderr.count("\n") == 1 and f"cannot reach the chain at {url}" in run.stderr
