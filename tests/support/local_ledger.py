"""A ledger with round 0 open on a LocalChain: what the persistence and crash tests check survives."""

from __future__ import annotations

from web3 import HTTPProvider, Web3

from fedledger.chain.compiler import CompiledContract
from fedledger.chain.deploy import Deployment, deploy_ledger, dev_consortium
from fedledger.chain.devaccounts import DevRoles
from fedledger.digests import sm3


def deploy_and_open_round(
    rpc_url: str, compiled: CompiledContract, accounts: DevRoles, institutions: int = 3, threshold: int = 2
) -> Deployment:
    """Deploy for dev institutions and open round 0, so a rollback would show in code and round state."""
    w3 = Web3(HTTPProvider(rpc_url))
    deployment = deploy_ledger(
        w3, accounts.deployer, aggregator=accounts.aggregator.address,
        institutions=dev_consortium(institutions), threshold=threshold, compiled=compiled,
    )  # fmt: skip
    deployment.client(w3).open_round(accounts.aggregator, 0, "QmBase", sm3(b"base"))
    return deployment


def assert_ledger_kept(rpc_url: str, deployment: Deployment) -> None:
    """The ledger's code and its open round are still there."""
    w3 = Web3(HTTPProvider(rpc_url))
    assert w3.eth.get_code(deployment.address), "the ledger was rolled back"
    assert deployment.client(w3).round_state().open
