"""Whether a demo with a misbehaving member came out as the trust model says it must.

Every global model verified, every honest entry verified, and in every round the adversary's entry
left out of the record with the aggregator's reason for it. Judged from the audit API's summary
(what anyone can check) and the aggregator's log (where the reason is given).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from demo.adversary import rejection_reasons
from fedledger.protocol.consortium import Member

ROUND = re.compile(r"round (\d+)\b")


def _reasons_by_round(log: Path, address: str) -> dict[int, str]:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines() if log.is_file() else []
    reasons: dict[int, str] = {}
    for line in rejection_reasons(lines, address):
        found = ROUND.search(line)
        if found:
            reasons[int(found.group(1))] = line[found.start() :]
    return reasons


def judge_adversary(audit: dict[str, Any], member: Member, kind: str, rounds: int, log: Path) -> dict[str, Any]:
    """The adversary part of the closing summary; ``ok`` only if the federation withstood it."""
    address = member.address.lower()
    problems: list[str] = []
    if not audit:
        problems.append("the audit API gave no summary")
    failures = audit.get("failures", [])
    others = [f for f in failures if f.get("kind") != "update" or (f.get("institution") or "").lower() != address]
    problems += [
        f"round {f['round']} {f['kind']} {f.get('institution') or ''}: {f['check']}: {f['detail']}" for f in others
    ]
    globals_ = audit.get("global_models", {})
    if audit and (globals_.get("verified") != globals_.get("total") or globals_.get("total", 0) < rounds):
        problems.append(f"{globals_.get('verified')}/{globals_.get('total')} global models verified")
    left_out = {f["round"] for f in failures if f not in others and f.get("check") == "included"}
    reasons = _reasons_by_round(log, address)
    rejected = []
    for r in range(rounds):
        if r not in left_out:
            problems.append(f"round {r}: the audit does not show the adversary's entry left out")
        elif r not in reasons:
            problems.append(f"round {r}: the aggregator gave no reason for leaving the adversary's entry out")
        else:
            rejected.append({"round": r, "reason": reasons[r]})
    updates = audit.get("updates", {})
    honest = f"{updates.get('verified', 0)}/{updates.get('total', 0) - len(left_out)} honest updates verified"
    verdict = (
        f"{honest}, every global model verified, its {len(rejected)} entries rejected with their reasons"
        if not problems
        else "; ".join(problems)
    )
    return {
        "member": member.name,
        "address": address,
        "kind": kind,
        "ok": not problems,
        "verdict": verdict,
        "rejected": rejected,
    }
