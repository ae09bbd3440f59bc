"""``fedledger demo --secure-aggregation --dp-epsilon 8``: every party its own process, secure
aggregation with DP in every round (members clip before masking, the unmasked aggregate gets the
committed-secret noise); every entry verifies and the audit's epsilon stands next to the budget."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fedledger.dp.accountant import RoundPrivacy, epsilon

FEDLEDGER = [sys.executable, "-m", "fedledger.cli"]


def test_secure_demo_with_dp_verifies_every_entry_and_accounts_epsilon(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FEDLEDGER, "demo", "--secure-aggregation", "--dp-epsilon", "8", "--rounds", "2", "--epochs", "1",
         "--json", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
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
