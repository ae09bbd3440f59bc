"""``fedledger demo --secure-aggregation --dp-epsilon 8``: every party its own process, secure
aggregation with DP in every round (members clip before masking, the unmasked aggregate gets the
committed-secret noise); every entry verifies and the audit's epsilon stands next to the budget."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedledger.dp.accountant import RoundPrivacy, epsilon
from tests.support.demo_run import demo_summary


def test_secure_demo_with_dp_verifies_every_entry_and_accounts_epsilon(tmp_path: Path) -> None:
    summary = demo_summary(tmp_path / "demo", "--secure-aggregation", "--dp-epsilon", "8")
    audit = summary["audit"]
    assert audit["all_verified"] and audit["global_models"]["verified"] == 2, audit
    privacy = summary["privacy"]
    assert privacy["budget"]["epsilon"] == 8 and privacy["within_budget"], privacy
    recorded = [RoundPrivacy(**r["dp"]) for r in privacy["rounds"]]
    assert [r["round"] for r in privacy["rounds"]] == [0, 1] and all(p.participants == 5 for p in recorded)
    assert privacy["spent_epsilon"] == pytest.approx(epsilon(recorded, 1e-5))
    assert 7.9 < privacy["spent_epsilon"] <= 8
    aggregator_log = (Path(summary["logs"]) / "aggregator.log").read_text(encoding="utf-8")
    assert aggregator_log.count("secure aggregation phase reveal") == 2  # both rounds summed masked inputs
