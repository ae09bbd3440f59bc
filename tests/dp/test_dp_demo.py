"""``fedledger demo --dp-epsilon 8``: every party its own process, central DP in every round; every
entry verifies and the audit's ``/privacy`` recomputes epsilon per round and in total from the
ledger, next to the on-chain budget the demo deployed."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedledger.dp.accountant import RoundPrivacy, epsilon
from tests.support.demo_run import demo_summary


def test_demo_with_dp_verifies_every_entry_and_accounts_epsilon_against_the_budget(tmp_path: Path) -> None:
    summary = demo_summary(tmp_path / "demo", "--dp-epsilon", "8")
    audit = summary["audit"]
    assert audit["all_verified"] and audit["global_models"]["verified"] == 2, audit
    privacy = summary["privacy"]
    assert privacy["budget"]["epsilon"] == 8 and privacy["budget"]["delta"] == pytest.approx(1e-5)
    rounds = privacy["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    recorded = [RoundPrivacy(**r["dp"]) for r in rounds]
    assert all(p.participants == 5 and p.sample_rate == 1.0 for p in recorded)
    assert rounds[0]["epsilon"] == pytest.approx(epsilon(recorded[:1], 1e-5))
    assert privacy["spent_epsilon"] == pytest.approx(epsilon(recorded, 1e-5)) == rounds[1]["cumulative_epsilon"]
    assert 7.9 < privacy["spent_epsilon"] <= 8 and privacy["within_budget"]
