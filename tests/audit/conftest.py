"""Audit fixtures: the happy-path scenario (played once per module) and private store copies."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # audit_scenario, whatever pytest's import mode

from audit_scenario import RoundPlan, Scenario, play_rounds

from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain

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
