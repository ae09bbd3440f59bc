"""Shared fixtures: real local chains, the compiled ledger contract, funded dev accounts, and
freshly deployed ledgers (five institutions, k = 3).

Chains are session-scoped (one Anvil, and one Hardhat node only if a test asks for it); ledgers
are deployed per test, so every test starts from round 0 on a contract nobody else touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from fedledger.chain.compiler import CompiledContract, compile_ledger
from fedledger.chain.devaccounts import DevRoles, dev_roles
from fedledger.chain.localchain import LocalChain

if TYPE_CHECKING:
    from web3 import Web3

    from fedledger.chain.client import LedgerClient
    from fedledger.chain.deploy import Deployment

DEV_INSTITUTIONS = 5
DEV_THRESHOLD = 3
CHAIN_KINDS = ("anvil", "hardhat")


@pytest.fixture(scope="session")
def compiled_ledger() -> CompiledContract:
    """FederatedLedger compiled for this session by the real compiler (no cache)."""
    return compile_ledger(use_cache=False)


@pytest.fixture(scope="session")
def anvil_chain() -> Iterator[LocalChain]:
    """A real Anvil (from node_modules) on a free loopback port."""
    with LocalChain("anvil") as chain:
        yield chain


@pytest.fixture(scope="session")
def hardhat_chain() -> Iterator[LocalChain]:
    """A real Hardhat node (``hardhat node``) on a free loopback port."""
    with LocalChain("hardhat") as chain:
        yield chain


@pytest.fixture(scope="session", params=CHAIN_KINDS)
def any_chain(request: pytest.FixtureRequest) -> LocalChain:
    """Each local chain in turn: tests using it run once against Anvil and once against Hardhat."""
    chain: LocalChain = request.getfixturevalue(f"{request.param}_chain")
    return chain


@pytest.fixture(scope="session")
def dev_accounts() -> DevRoles:
    """Funded dev accounts: deployer, aggregator, five institutions, one outsider."""
    return dev_roles(DEV_INSTITUTIONS)


def _w3(chain: LocalChain) -> Web3:
    from web3 import HTTPProvider, Web3

    return Web3(HTTPProvider(chain.rpc_url, request_kwargs={"timeout": 60}))


@pytest.fixture(scope="session")
def anvil_w3(anvil_chain: LocalChain) -> Web3:
    return _w3(anvil_chain)


def deploy_dev_ledger(
    chain: LocalChain, compiled: CompiledContract, roles: DevRoles, threshold: int = DEV_THRESHOLD
) -> Deployment:
    """Deploy a ledger for the dev consortium on ``chain``; returns its Deployment."""
    from fedledger.chain.deploy import deploy_ledger, dev_consortium

    return deploy_ledger(
        _w3(chain),
        roles.deployer,
        aggregator=roles.aggregator.address,
        institutions=dev_consortium(len(roles.institutions)),
        threshold=threshold,
        compiled=compiled,
        rpc_url=chain.rpc_url,
    )


@pytest.fixture(scope="session")
def ledger_factory(compiled_ledger: CompiledContract, dev_accounts: DevRoles) -> Callable[..., Deployment]:
    """``ledger_factory(chain, threshold=3)`` deploys another fresh dev ledger on ``chain``."""

    def deploy(chain: LocalChain, threshold: int = DEV_THRESHOLD) -> Deployment:
        return deploy_dev_ledger(chain, compiled_ledger, dev_accounts, threshold)

    return deploy


@pytest.fixture
def ledger_deployment(
    anvil_chain: LocalChain, compiled_ledger: CompiledContract, dev_accounts: DevRoles
) -> Deployment:
    """A fresh ledger on the session Anvil (5 institutions, k = 3), as its Deployment record."""
    return deploy_dev_ledger(anvil_chain, compiled_ledger, dev_accounts)


@pytest.fixture
def ledger(ledger_deployment: Deployment, anvil_w3: Web3) -> LedgerClient:
    """A LedgerClient for a fresh ledger on the session Anvil."""
    return ledger_deployment.client(anvil_w3)


@pytest.fixture
def any_ledger(
    any_chain: LocalChain, compiled_ledger: CompiledContract, dev_accounts: DevRoles
) -> LedgerClient:
    """A LedgerClient for a fresh ledger, once on Anvil and once on Hardhat's node."""
    deployment = deploy_dev_ledger(any_chain, compiled_ledger, dev_accounts)
    return deployment.client(_w3(any_chain))
