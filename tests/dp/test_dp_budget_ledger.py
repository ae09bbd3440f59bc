"""The consortium's privacy budget on the ledger: set at deployment, changed only by k of n
(real Anvil, real compiled contract)."""

from __future__ import annotations

import pytest

from fedledger.chain.approvals import PrivacyBudgetSetting
from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.errors import LedgerError

BUDGET = PrivacyBudgetSetting.of(8.0, 1e-5)  # what tests/dp/conftest.py deploys with


def test_budget_set_at_deployment_and_kept_in_the_deployment_file(
    budget_ledger: tuple[Deployment, LedgerClient], tmp_path: object
) -> None:
    deployment, client = budget_ledger
    assert client.privacy_budget() == BUDGET == PrivacyBudgetSetting(8_000_000, 10_000_000)
    assert (client.privacy_budget().epsilon, client.privacy_budget().delta) == (8.0, 1e-5)
    saved = deployment.save(f"{tmp_path}/deployment.json")
    assert Deployment.load(saved).privacy_budget == BUDGET


def test_default_deployment_has_no_budget(ledger: LedgerClient) -> None:
    assert not ledger.privacy_budget().is_set


def test_budget_changes_only_with_k_approvals(
    budget_ledger: tuple[Deployment, LedgerClient], dev_accounts: DevRoles
) -> None:
    _, client = budget_ledger
    looser = PrivacyBudgetSetting.of(100.0, 1e-5)
    two = [client.approve_privacy_budget(a, looser) for a in dev_accounts.institutions[:2]]
    with pytest.raises(LedgerError, match="NotEnoughApprovals"):
        client.set_privacy_budget(dev_accounts.outsider, looser, two)
    assert client.privacy_budget() == BUDGET

    # eth-account's EIP-712 encoding (Python) and the contract's hashing agree, or this reverts
    tighter = PrivacyBudgetSetting.of(4.0, 1e-6)
    three = [client.approve_privacy_budget(a, tighter) for a in dev_accounts.institutions[:3]]
    client.set_privacy_budget(dev_accounts.outsider, tighter, three)
    assert client.privacy_budget() == tighter
    names = [e.name for e in client.membership_events()]
    assert names.count("PrivacyBudgetChanged") == 2  # deployment, then the governed change


def test_invalid_budget_refused_before_any_transaction() -> None:
    for epsilon, delta in ((0.0, 1e-5), (8.0, 0.0), (8.0, 1.0), (-1.0, 1e-5)):
        with pytest.raises(ValueError, match="privacy budget needs"):
            PrivacyBudgetSetting.of(epsilon, delta)
