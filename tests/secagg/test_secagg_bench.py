"""The benchmark runs end to end on a small model and reports its ratios against plain alignment."""

from __future__ import annotations

from fedledger.fl import ModelSpec
from fedledger.secagg.bench import run_benchmark


def test_bench_reports_time_and_upload_ratios_per_member_count():
    result = run_benchmark(sizes=(3,), repeats=1, spec=ModelSpec("mlp", (16,), 4, (32, 32)))
    row = result["by_members"]["3"]
    assert row["time_ratio"] == row["secure_aggregator_s"] / row["plain_alignment_s"] > 0
    assert row["ring_bits"] == 32
    assert 1.0 < row["upload_ratio_max"] <= 1.1  # the sub-model in 32-bit ring words plus a small header
    assert len(result["load_average_1m"]) == 2 and min(result["load_average_1m"]) >= 0
    assert result["time_goal_met_at_10"] is None and isinstance(result["upload_goal_met"], bool)
