"""Audit fixtures: the happy-path scenario (played once per module) and private store copies."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain
from tests.support.audit_scenario import RoundPlan, Scenario, play_rounds

HAPPY_PLANS = [
    RoundPlan(submitters=[0, 1, 2, 3]),
    RoundPlan(submitters=[4, 3, 2, 1, 0], accesses=[0, 2]),
    RoundPlan(submitters=[1, 0], post=False, accesses=[1]),
]


@pytest.fixture(scope="module")
def happy(
    anvil_chain: LocalChain,
    ledger_factory: Callable[..., Deployment],
    dev_accounts: DevRoles,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scenario:
    """Two posted rounds where everything is in order, and a third round still open."""
    deployment = ledger_factory(anvil_chain)
    return play_rounds(
        deployment, deployment.client(), dev_accounts, tmp_path_factory.mktemp("audit-happy"), HAPPY_PLANS
    )


@pytest.fixture
def store_copy(happy: Scenario, tmp_path: Path) -> Path:
    """A private copy of the happy scenario's store, free to corrupt."""
    target = tmp_path / "store-copy"
    shutil.copytree(happy.store_dir, target)
    return target


TAMPERED_PLANS = [
    # institution 3's entry is signed with another institution's key; the aggregator leaves it out
    RoundPlan(submitters=[0, 1, 2, 3], forged=[3], excluded=[3]),
    # institution 1's ledger digest is not its file's; institution 2's forged entry is included anyway
    RoundPlan(submitters=[0, 1, 2, 4], wrong_digest=[1], forged=[2]),
    # the consortium threshold-signs a record with another updates root than the one posted
    RoundPlan(submitters=[0], bad_threshold_signature=True),
]


@pytest.fixture(scope="module")
def tampered(
    anvil_chain: LocalChain,
    ledger_factory: Callable[..., Deployment],
    dev_accounts: DevRoles,
    tmp_path_factory: pytest.TempPathFactory,
) -> Scenario:
    """Three posted rounds with planted faults, then institution 4 removed from the consortium."""
    from fedledger.chain.approvals import MembershipChange

    deployment = ledger_factory(anvil_chain)
    ledger = deployment.client()
    scenario = play_rounds(deployment, ledger, dev_accounts, tmp_path_factory.mktemp("audit-tampered"), TAMPERED_PLANS)
    change = MembershipChange.remove(dev_accounts.institutions[4].address, 3)
    approvals = [ledger.approve_membership_change(dev_accounts.institutions[i], change) for i in range(3)]
    ledger.remove_institution(dev_accounts.deployer, change.account, change.threshold, approvals)
    return scenario
