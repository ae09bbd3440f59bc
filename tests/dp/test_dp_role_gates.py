"""The aggregator opens, and a node signs, only rounds the on-chain privacy budget allows: the
same check on the real ledger (Anvil) and the real store, past rounds read from their manifests."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.driver import RoundFailed
from aggregator.privacy_gate import check_can_open
from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.dp.accountant import RoundPrivacy
from fedledger.store import LocalStore
from node.privacy_gate import privacy_refusal
from tests.support.audit_scenario import RoundPlan, play_rounds

MODEST = RoundPrivacy(clip=1.0, noise_multiplier=4.0, sample_rate=1.0, participants=5)
GREEDY = RoundPrivacy(clip=1.0, noise_multiplier=0.3, sample_rate=1.0, participants=5)


def test_without_a_budget_only_rounds_without_dp(ledger: LedgerClient, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    check_can_open(ledger, store, 0)
    with pytest.raises(RoundFailed, match=r"round 0 not opened: .*sets no privacy budget"):
        check_can_open(ledger, store, 0, MODEST)
    assert privacy_refusal(ledger, store, 0, None) is None
    assert "sets no privacy budget" in str(privacy_refusal(ledger, store, 0, MODEST))


def test_with_a_budget_only_dp_rounds_within_it(
    budget_ledger: tuple[Deployment, LedgerClient], tmp_path: Path
) -> None:
    _, ledger = budget_ledger
    store = LocalStore(tmp_path / "store")
    with pytest.raises(RoundFailed, match="requires DP in every round"):
        check_can_open(ledger, store, 0)
    check_can_open(ledger, store, 0, MODEST)
    with pytest.raises(RoundFailed, match="over the budget 8"):
        check_can_open(ledger, store, 0, GREEDY)
    assert "over the budget 8" in str(privacy_refusal(ledger, store, 0, GREEDY))
    assert privacy_refusal(ledger, store, 0, MODEST) is None


def test_past_rounds_come_from_their_manifests(
    budget_ledger: tuple[Deployment, LedgerClient], dev_accounts: DevRoles, tmp_path: Path
) -> None:
    deployment, ledger = budget_ledger
    scenario = play_rounds(deployment, ledger, dev_accounts, tmp_path / "play", [RoundPlan(submitters=[0, 1, 2])])
    store = LocalStore(scenario.store_dir)
    assert privacy_refusal(ledger, store, 1, MODEST) is None  # round 0 (no DP, manifest read) spent nothing
    empty = LocalStore(tmp_path / "empty")
    refusal = str(privacy_refusal(ledger, empty, 1, MODEST))
    assert "round 0's DP parameters are unknown" in refusal and "missing" in refusal
