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


@pytest.fixture(scope="session")
def play_on_fresh_ledger(
    anvil_chain: LocalChain,
    ledger_factory: Callable[..., Deployment],
    dev_accounts: DevRoles,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, list[RoundPlan]], Scenario]:
    """``play(name, plans)``: deploy a fresh dev ledger on the session Anvil and play ``plans`` on it."""

    def play(name: str, plans: list[RoundPlan]) -> Scenario:
        deployment = ledger_factory(anvil_chain)
        return play_rounds(deployment, deployment.client(), dev_accounts, tmp_path_factory.mktemp(name), plans)

    return play


@pytest.fixture(scope="module")
def happy(play_on_fresh_ledger: Callable[[str, list[RoundPlan]], Scenario]) -> Scenario:
    """Two posted rounds where everything is in order, and a third round still open."""
    return play_on_fresh_ledger("audit-happy", HAPPY_PLANS)


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
def tampered(play_on_fresh_ledger: Callable[[str, list[RoundPlan]], Scenario], dev_accounts: DevRoles) -> Scenario:
    """Three posted rounds with planted faults, then institution 4 removed from the consortium."""
    from fedledger.chain.approvals import MembershipChange

    scenario = play_on_fresh_ledger("audit-tampered", TAMPERED_PLANS)
    ledger = scenario.ledger
    change = MembershipChange.remove(dev_accounts.institutions[4].address, 3)
    approvals = [ledger.approve_membership_change(dev_accounts.institutions[i], change) for i in range(3)]
    ledger.remove_institution(dev_accounts.deployer, change.account, change.threshold, approvals)
    return scenario
