"""Each member's record-level privacy from local DP-SGD, recomputed from its statements on the ledger.

A node that trains by DP-SGD records its round's parameters (noise multiplier, clip, sample rate,
steps, delta) as an access record on the CID of the update it submits, from its own account,
before the entry (``fedledger.dp.local``: ``local-dp/1 {...}``). The audit joins each update
entry with that statement and recomputes the member's epsilon per round and cumulatively with
the project's accountant. The parameters are the member's own claim: nobody else can see that the
noise was really added (it protects the member's records, not the round); see docs/secagg.md.

An update sent without a statement has no record-level bound: the member's cumulative epsilon is
then null from that round on, never a number that looks like a guarantee.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from eth_utils import to_checksum_address
from pydantic import Field

from fedledger.audit.index import LedgerSnapshot
from fedledger.audit.models import EventRef, _Model
from fedledger.audit.views import event_ref
from fedledger.chain.client import AccessRecorded, UpdateSubmitted
from fedledger.dp.errors import DPParameterError
from fedledger.dp.local import STATEMENT_PREFIX, LocalDPRound, local_epsilon

Statements = dict[tuple[str, str], list[AccessRecorded]]  # (accessor, CID) -> its local DP statements
CLAIM = "declared by the member on the ledger; recomputed here, not verifiable by others"


class LocalRoundEpsilon(_Model):
    round: int
    cid: str
    local_dp: dict[str, Any] | None = Field(description="The member's DP-SGD parameters; null: no local DP.")
    epsilon: float | None = Field(description="This round's record-level epsilon at its delta.")
    cumulative_epsilon: float | None = Field(
        description="Epsilon of every update this member sent up to this one; null once one had no local DP."
    )
    declared_at: EventRef | None = Field(description="The access record that carries the parameters.")
    detail: str


class MemberLocalPrivacy(_Model):
    institution: str
    local_dp: bool = Field(description="Every update this member sent declares local DP-SGD.")
    spent_epsilon: float | None = Field(
        description="Record-level epsilon over all its updates (at the largest declared delta); null: "
        "no bound (an update without local DP, or an unreadable statement)."
    )
    delta: float | None
    rounds: list[LocalRoundEpsilon]
    detail: str


class LocalPrivacyModel(_Model):
    """Per member, per round and cumulative record-level epsilon of local DP-SGD."""

    members: list[MemberLocalPrivacy]
    note: str = Field(default=f"local DP-SGD parameters are {CLAIM} (docs/secagg.md, 'Local DP-SGD')")


def _statements(accesses: list[AccessRecorded]) -> Statements:
    """Local DP statements by (accessor, CID)."""
    found: dict[tuple[str, str], list[AccessRecorded]] = defaultdict(list)
    for access in accesses:
        if access.purpose.startswith(STATEMENT_PREFIX):
            found[(access.accessor.lower(), access.cid)].append(access)
    return found


def _declared(said: list[AccessRecorded]) -> tuple[LocalDPRound | None, str]:
    """The parameters one update's statements declare, or why there are none that count."""
    if not said:
        return None, "no local DP"
    if len({a.purpose for a in said}) > 1:
        return None, "conflicting local DP statements for this update: no bound"
    try:
        return LocalDPRound.from_statement(said[0].purpose), CLAIM
    except DPParameterError as exc:
        return None, f"unreadable local DP statement ({exc}): no bound"


def _member(address: str, entries: list[UpdateSubmitted], statements: Statements) -> MemberLocalPrivacy:
    rows: list[LocalRoundEpsilon] = []
    spent: list[LocalDPRound] = []
    bounded = True
    for entry in sorted(entries, key=lambda e: (e.round, e.meta.block_number, e.meta.log_index)):
        said = statements.get((address.lower(), entry.cid), [])
        params, detail = _declared(said)
        if params is None:
            bounded = False
        else:
            spent.append(params)
        rows.append(
            LocalRoundEpsilon(
                round=entry.round,
                cid=entry.cid,
                local_dp=params.to_dict() if params else None,
                epsilon=params.epsilon() if params else None,
                cumulative_epsilon=local_epsilon(spent) if bounded else None,
                declared_at=event_ref(said[0].meta) if said else None,
                detail=detail,
            )
        )
    every = all(r.local_dp is not None for r in rows)
    none = all(r.detail == "no local DP" for r in rows)
    summary = (
        "no local DP" if none
        else f"local DP-SGD on every update, {CLAIM}" if every
        else "some updates without a readable local DP statement: no record-level bound"
    )  # fmt: skip
    return MemberLocalPrivacy(
        institution=to_checksum_address(address),
        local_dp=every,
        spent_epsilon=local_epsilon(spent) if every else None,
        delta=max(p.delta for p in spent) if every else None,
        rounds=rows,
        detail=summary,
    )


def local_privacy(snapshot: LedgerSnapshot) -> LocalPrivacyModel:
    """Every member that sent an update, with its local DP-SGD epsilon per round and cumulatively."""
    statements = _statements(snapshot.accesses)
    by_member: dict[str, list[UpdateSubmitted]] = defaultdict(list)
    for entries in snapshot.updates.values():
        for entry in entries:
            by_member[entry.institution.lower()].append(entry)
    return LocalPrivacyModel(members=[_member(a, by_member[a], statements) for a in sorted(by_member)])
