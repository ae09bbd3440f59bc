"""``fedledger demo --adversary``: one misbehaving institution, every party its own process.

It succeeds (exit 0) only if every honest entry and global model is verified and the adversary's
entry is rejected with its reason in every round; the closing summary says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from demo.adversary_verdict import judge_adversary
from fedledger.protocol.consortium import Member

FEDLEDGER = [sys.executable, "-m", "fedledger.cli"]
ADVERSARY = Member("hospital-5", "0x976EA74026E726554dB657fA54763abd0C3a0aa9", "inst:hospital-5", 5)


def test_demo_with_a_billion_sample_claim_rejects_it_with_its_reason_and_verifies_the_rest(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FEDLEDGER, "demo", "--adversary", "billion-samples", "--rounds", "1", "--epochs", "1", "--json",
         "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    judged = summary["adversary"]
    assert judged["ok"] and judged["member"] == "hospital-5", judged
    assert [r["round"] for r in judged["rejected"]] == [0]
    assert "sample" in judged["rejected"][0]["reason"] or "fields_mismatch" in judged["rejected"][0]["reason"]
    audit = summary["audit"]
    assert audit["global_models"]["verified"] == audit["global_models"]["total"] == 1
    assert audit["updates"]["verified"] == 4 and audit["updates"]["total"] == 5


def test_an_unknown_adversary_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [*FEDLEDGER, "demo", "--adversary", "bribes-the-auditor", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown adversary 'bribes-the-auditor'" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "demo").exists()


def _audit(failures: list[dict[str, object]], updates: tuple[int, int] = (4, 5)) -> dict[str, object]:
    return {
        "failures": failures,
        "updates": {"verified": updates[0], "total": updates[1]},
        "global_models": {"verified": 1, "total": 1},
    }


def _left_out(institution: str) -> dict[str, object]:
    return {"kind": "update", "round": 0, "institution": institution, "cid": "Qm", "check": "included", "detail": "x"}


def test_the_verdict_fails_when_an_honest_entry_fails_or_no_reason_is_given(tmp_path: Path) -> None:
    log = tmp_path / "aggregator.log"
    log.write_text(f"round 0: update from institution '{ADVERSARY.address}' rejected (whole update): bad\n")
    assert judge_adversary(_audit([_left_out(ADVERSARY.address)]), ADVERSARY, "nan", 1, log)["ok"]
    honest_failed = _audit([_left_out(ADVERSARY.address), _left_out("0x" + "ab" * 20)], (3, 5))
    assert not judge_adversary(honest_failed, ADVERSARY, "nan", 1, log)["ok"]
    assert not judge_adversary(_audit([], (5, 5)), ADVERSARY, "nan", 1, log)["ok"]  # included after all
    log.write_text("round 0 posted\n")
    assert not judge_adversary(_audit([_left_out(ADVERSARY.address)]), ADVERSARY, "nan", 1, log)["ok"]
    assert not judge_adversary({}, ADVERSARY, "nan", 1, log)["ok"]
