"""The audit's privacy account: per-round and cumulative epsilon recomputed from recorded DP
parameters, next to the budget read from the ledger's own events (real Anvil)."""

from __future__ import annotations

import pytest

from fedledger.audit.index import LedgerIndex
from fedledger.audit.privacy import budget_of, privacy_account
from fedledger.chain.approvals import PrivacyBudgetSetting
from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.dp.accountant import RoundPrivacy, epsilon

ROUND = RoundPrivacy(clip=1.0, noise_multiplier=1.0, sample_rate=1.0, participants=5)


def test_budget_is_the_latest_governed_change(
    budget_ledger: tuple[Deployment, LedgerClient], dev_accounts: DevRoles
) -> None:
    _, client = budget_ledger
    first = budget_of(LedgerIndex(client).snapshot())
    assert first is not None and (first.epsilon, first.delta) == (8.0, 1e-5)
    tighter = PrivacyBudgetSetting.of(2.5, 1e-6)
    approvals = [client.approve_privacy_budget(a, tighter) for a in dev_accounts.institutions[:3]]
    client.set_privacy_budget(dev_accounts.outsider, tighter, approvals)
    after = budget_of(LedgerIndex(client).snapshot())
    assert after is not None and (after.epsilon, after.delta) == (2.5, 1e-6)
    assert after.set_at.block > first.set_at.block


def test_per_round_and_cumulative_epsilon_recomputed(budget_ledger: tuple[Deployment, LedgerClient]) -> None:
    _, client = budget_ledger
    snapshot = LedgerIndex(client).snapshot()
    account = privacy_account(snapshot, {0: None, 1: ROUND, 2: ROUND})
    assert [r.epsilon for r in account.rounds] == [None, epsilon([ROUND], 1e-5), epsilon([ROUND], 1e-5)]
    assert account.rounds[2].cumulative_epsilon == epsilon([ROUND, ROUND], 1e-5) == account.spent_epsilon
    assert account.rounds[1].dp == ROUND.to_dict()
    assert account.within_budget and account.remaining_epsilon == pytest.approx(8.0 - account.spent_epsilon)

    many = privacy_account(snapshot, dict.fromkeys(range(40), ROUND))
    assert many.spent_epsilon > 8.0 and not many.within_budget and many.remaining_epsilon < 0


def test_unreadable_round_or_unbudgeted_dp_is_not_within_budget(
    budget_ledger: tuple[Deployment, LedgerClient], ledger: LedgerClient
) -> None:
    _, client = budget_ledger
    account = privacy_account(LedgerIndex(client).snapshot(), {0: ROUND, 1: "manifest missing from the store"})
    assert not account.within_budget and account.rounds[1].detail == "manifest missing from the store"

    unbudgeted = privacy_account(LedgerIndex(ledger).snapshot(), {0: ROUND})  # deployed without a budget
    assert unbudgeted.budget is None and not unbudgeted.within_budget
    assert "no budget" in unbudgeted.rounds[0].detail
    assert privacy_account(LedgerIndex(ledger).snapshot(), {0: None}).within_budget
