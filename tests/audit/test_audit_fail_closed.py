"""The audit fails closed: no ledger at the address, another chain id or deployment, or a rollback is
an error (exit 3, HTTP 503), never "every entry verified"; an empty ledger says there was nothing to
verify. All against the real session Anvil; rollbacks with its evm_snapshot / evm_revert."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from web3 import Web3

from fedledger.audit.api import create_app
from fedledger.audit.setup import open_audit_service
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app
from tests.support.audit_scenario import RoundPlan, Scenario

runner = CliRunner()


def _summary(scenario: Scenario, *ledger_args: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        [
            "audit", "summary", *ledger_args,
            "--store", f"local:{scenario.store_dir}",
            "--master-public-key", str(scenario.master_public_key_path),
        ],
    )  # fmt: skip
    return result.exit_code, result.output


def _with(deployment: Deployment, directory: Path, **changes: object) -> Path:
    return Deployment.from_json({**deployment.to_json(), **changes}).save(directory / "deployment.json")


def test_an_address_without_ledger_code_is_an_error(happy: Scenario, dev_accounts: DevRoles) -> None:
    eoa = dev_accounts.outsider.address
    code, output = _summary(happy, "--rpc-url", happy.deployment.rpc_url, "--contract", eoa)
    assert code == 3, output
    assert "no ledger contract code" in output and eoa in output
    assert "verified" not in output

    service = open_audit_service(
        store=f"local:{happy.store_dir}",
        master_public_key=happy.master_public_key_path,
        rpc_url=happy.deployment.rpc_url,
        contract=eoa,
    )
    client = TestClient(create_app(service))
    for url in ("/summary", "/rounds", "/health"):
        response = client.get(url)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "no_ledger"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: {"chain_id": 1}, "but the ledger was deployed on chain 1"),
        (lambda d: {"deploy_block": d.deploy_block + 1}, "deployment transaction created"),
        (lambda d: {"deploy_block": d.deploy_block + 10**9}, "before the ledger's deployment block"),
        (lambda d: {"tx_hash": "0x" + "ab" * 32}, "is not on the chain"),
    ],
    ids=["chain-id", "deploy-block", "block-in-the-future", "deploy-tx"],
)
def test_a_chain_or_deployment_other_than_configured_is_an_error(
    happy: Scenario, tmp_path: Path, change: Callable[[Deployment], dict[str, object]], message: str
) -> None:
    deployment_file = _with(happy.deployment, tmp_path, **change(happy.deployment))
    code, output = _summary(happy, "--deployment", str(deployment_file))
    assert code == 3, output
    assert message in " ".join(output.split())
    assert "verified" not in output


def test_an_empty_ledger_has_nothing_to_verify(
    anvil_chain: LocalChain,
    ledger_factory: Callable[..., Deployment],
    happy: Scenario,
    tmp_path: Path,
) -> None:
    deployment_file = ledger_factory(anvil_chain).save(tmp_path / "deployment.json")
    code, output = _summary(happy, "--deployment", str(deployment_file))
    assert code == 1, output
    assert "nothing to verify: 0 rounds" in output
    assert "verified" not in output.replace("nothing to verify", "")
    code, output = _summary(happy, "--deployment", str(deployment_file), "--json")
    body = json.loads(output)
    assert (body["status"], body["all_verified"], body["rounds"]) == ("nothing_to_verify", False, 0)


@pytest.fixture
def one_round(play_on_fresh_ledger: Callable[[str, list[RoundPlan]], Scenario]) -> Scenario:
    return play_on_fresh_ledger("audit-one-round", [RoundPlan(submitters=[0, 1, 2])])


@pytest.fixture
def chain_snapshot(one_round: Scenario, anvil_w3: Web3) -> Iterator[Callable[[], None]]:
    """``revert()`` takes the session Anvil back to the state just after ``one_round`` was played."""
    snapshot_id = anvil_w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    reverted = False

    def revert() -> None:
        nonlocal reverted
        assert anvil_w3.provider.make_request("evm_revert", [snapshot_id])["result"] is True  # type: ignore[arg-type]
        reverted = True

    yield revert
    if not reverted:
        revert()


def _open_second_round(scenario: Scenario) -> None:
    played = scenario.rounds[0]
    assert played.global_cid is not None and played.global_digest is not None
    scenario.ledger.open_round(scenario.roles.aggregator, 1, played.global_cid, played.global_digest)
    scenario.ledger.record_access(scenario.roles.institutions[0], played.global_cid, "train round 1")


@pytest.mark.parametrize("remine", [False, True], ids=["head-behind", "re-mined-past"])
def test_a_rollback_is_an_error_and_the_served_index_rebuilds(
    one_round: Scenario, chain_snapshot: Callable[[], None], anvil_w3: Web3, remine: bool
) -> None:
    client = one_round.client()
    assert client.get("/summary").json()["all_verified"] is True
    before = anvil_w3.eth.block_number
    _open_second_round(one_round)
    body = client.get("/summary").json()
    assert (body["rounds"], body["access_records"], body["all_verified"]) == (2, 2, True)

    chain_snapshot()
    if remine:  # the chain grows past the indexed height with other blocks: the head alone is no tell
        anvil_w3.provider.make_request("anvil_mine", [hex(10)])  # type: ignore[arg-type]
        assert anvil_w3.eth.block_number > before + 2
    response = client.get("/summary")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "chain_rolled_back"
    assert "rolled back" in response.json()["message"]

    rebuilt = client.get("/summary")
    assert rebuilt.status_code == 200, rebuilt.text
    body = rebuilt.json()
    assert (body["rounds"], body["access_records"], body["all_verified"]) == (1, 1, True)
    assert client.get("/rounds/1").status_code == 404
