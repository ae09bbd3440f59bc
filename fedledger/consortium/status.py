"""``consortium status``: who is a member, when each was last seen, who the open round waits on.

Everything comes from the ledger (membership, submissions, access records, round events) and the
aggregator's ``/health`` (whom it waits for and until when); nothing is asked of the hospitals.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedledger.chain.deploy import Deployment
from fedledger.consortium import kits as k
from fedledger.consortium.plan import load_plan
from fedledger.protocol.consortium import Consortium


@dataclass(frozen=True)
class MemberStatus:
    name: str
    address: str
    member: bool
    last_seen_utc: str | None
    submitted_this_round: bool
    waited_on: bool


@dataclass(frozen=True)
class FederationStatus:
    contract: str
    chain_id: int
    threshold: int
    round: int | None
    round_open: bool
    rounds_posted: int
    aggregator_state: str
    deadline_utc: str | None
    members: list[MemberStatus] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _utc(timestamp: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(timestamp))


def aggregator_health(url: str) -> dict[str, Any]:
    """The aggregator's ``/health``, or a state saying it cannot be reached."""
    import httpx

    try:
        response = httpx.get(f"{url}/health", timeout=5.0)
        response.raise_for_status()
        return dict(response.json())
    except (httpx.HTTPError, ValueError) as exc:
        return {"state": f"unreachable ({type(exc).__name__})"}


def federation_status(kits: Path, plan_path: Path | None = None) -> FederationStatus:
    plan = load_plan(plan_path or kits / "kgc" / k.PLAN_FILE)
    ledger = Deployment.load(kits / k.DEPLOYMENT_FILE).client()
    roster = Consortium.load(kits / k.ROSTER_FILE)
    state = ledger.round_state()
    submitted = {e.institution.lower() for e in ledger.updates_submitted(round=state.round)} if state.started else set()
    health = aggregator_health(plan.aggregator.url)
    waiting = set(health.get("waiting_on") or []) if state.open else set()
    blocks: dict[int, int] = {}

    def seen(address: str) -> str | None:
        heights = [e.meta.block_number for e in ledger.updates_submitted(institution=address)]
        heights += [e.meta.block_number for e in ledger.access_records(accessor=address)]
        if not heights:
            return None
        height = max(heights)
        if height not in blocks:
            blocks[height] = int(ledger.w3.eth.get_block(height)["timestamp"])
        return _utc(blocks[height])

    names = {m.address.lower(): m.name for m in roster.members}
    by_identity = {i.identity: i.name for i in plan.institutions}  # members removed from the roster too
    members = []
    for inst in ledger.institutions():
        name = names.get(inst.address.lower()) or by_identity.get(inst.sm9_id, inst.sm9_id)
        members.append(
            MemberStatus(
                name,
                inst.address,
                inst.active,
                seen(inst.address),
                inst.address.lower() in submitted,
                name in waiting,
            )
        )
    return FederationStatus(
        ledger.address,
        ledger.chain_id,
        ledger.threshold(),
        state.round if state.started else None,
        state.open,
        len(ledger.global_models_posted()),
        str(health.get("state", "unknown")),
        health.get("deadline_utc") if state.open else None,
        members,
    )


def render(status: FederationStatus) -> list[str]:
    """The status as text lines (what ``consortium status`` prints)."""
    if status.round is None:
        round_line = "no round opened yet"
    else:
        round_line = f"round {status.round} {'open' if status.round_open else 'closed'}"
        if status.round_open and status.deadline_utc:
            round_line += f", updates due by {status.deadline_utc} UTC"
    lines = [
        f"ledger {status.contract} on chain {status.chain_id}: k = {status.threshold}, "
        f"{status.rounds_posted} round(s) posted; {round_line}; aggregator {status.aggregator_state}",
        f"{'institution':<14} {'member':<7} {'last seen (UTC)':<20} {'this round':<11} address",
    ]
    for m in status.members:
        this_round = "submitted" if m.submitted_this_round else ("waiting on" if m.waited_on else "-")
        lines.append(
            f"{m.name:<14} {'yes' if m.member else 'removed':<7} {m.last_seen_utc or 'never':<20} "
            f"{this_round:<11} {m.address}"
        )
    return lines
