"""The audit's local-DP view on ledger events as the index holds them: a member's statements count
only for its own entries, and anything short of a readable statement per update gives no bound
(null), never a number."""

from __future__ import annotations

import pytest

from fedledger.audit.index import LedgerSnapshot
from fedledger.audit.local_privacy import local_privacy
from fedledger.chain.client import AccessRecorded, EventMeta, UpdateSubmitted
from fedledger.dp.local import LocalDPRound, local_epsilon

ALICE, BOB = "0x" + "a1" * 20, "0x" + "b2" * 20
PARAMS = LocalDPRound(1.5, 1.0, 0.1, 10, 1e-5)
_block = iter(range(1, 10_000))


def _meta() -> EventMeta:
    return EventMeta(next(_block), "0x" + "00" * 32, 0)


def _entry(who: str, round_index: int) -> UpdateSubmitted:
    cid = f"bafy{who[2:8]}{round_index}"
    return UpdateSubmitted(round_index, who, cid, b"\x01" * 32, b"\x02" * 32, 100, 1_000_000, b"", _meta())


def _said(who: str, entry: UpdateSubmitted, purpose: str) -> AccessRecorded:
    return AccessRecorded(who, b"\x00" * 32, entry.cid, purpose, _meta())


def _view(entries: list[UpdateSubmitted], accesses: list[AccessRecorded]) -> dict[str, dict]:
    updates: dict[int, list[UpdateSubmitted]] = {}
    for e in entries:
        updates.setdefault(e.round, []).append(e)
    snap = LedgerSnapshot(block=100, chain_id=31337, contract="0x" + "cc" * 20, updates=updates, accesses=accesses)
    return {m.institution.lower(): m.model_dump() for m in local_privacy(snap).members}


def test_declared_rounds_add_up_and_members_without_say_no_local_dp() -> None:
    a0, a1, b0 = _entry(ALICE, 0), _entry(ALICE, 1), _entry(BOB, 0)
    view = _view([a0, a1, b0], [_said(ALICE, a0, PARAMS.statement()), _said(ALICE, a1, PARAMS.statement())])
    alice, bob = view[ALICE], view[BOB]
    assert alice["local_dp"] and alice["spent_epsilon"] == pytest.approx(local_epsilon([PARAMS, PARAMS]))
    assert [r["cumulative_epsilon"] for r in alice["rounds"]] == [PARAMS.epsilon(), alice["spent_epsilon"]]
    assert (bob["local_dp"], bob["spent_epsilon"], bob["detail"]) == (False, None, "no local DP")
    assert bob["rounds"][0]["epsilon"] is None


def test_a_statement_by_another_account_does_not_count_for_a_member() -> None:
    b0 = _entry(BOB, 0)
    bob = _view([b0], [_said(ALICE, b0, PARAMS.statement())])[BOB]
    assert bob["local_dp"] is False and bob["spent_epsilon"] is None


@pytest.mark.parametrize(
    "statements",
    [
        ['local-dp/1 {"z":1.5}'],  # unreadable
        [PARAMS.statement(), LocalDPRound(9.0, 1.0, 0.1, 10, 1e-5).statement()],  # conflicting
    ],
)
def test_an_unreadable_or_conflicting_statement_gives_no_bound(statements: list[str]) -> None:
    a0, a1 = _entry(ALICE, 0), _entry(ALICE, 1)
    view = _view([a0, a1], [_said(ALICE, a0, PARAMS.statement())] + [_said(ALICE, a1, s) for s in statements])
    alice = view[ALICE]
    assert alice["local_dp"] is False and alice["spent_epsilon"] is None
    assert alice["rounds"][0]["cumulative_epsilon"] == PARAMS.epsilon()
    assert alice["rounds"][1]["epsilon"] is None and alice["rounds"][1]["cumulative_epsilon"] is None
    assert "no bound" in alice["rounds"][1]["detail"]


def test_an_update_sent_without_local_dp_ends_the_bound_for_later_rounds() -> None:
    a0, a1, a2 = _entry(ALICE, 0), _entry(ALICE, 1), _entry(ALICE, 2)
    alice = _view([a0, a1, a2], [_said(ALICE, a0, PARAMS.statement()), _said(ALICE, a2, PARAMS.statement())])[ALICE]
    assert [r["cumulative_epsilon"] for r in alice["rounds"]] == [PARAMS.epsilon(), None, None]
    assert alice["rounds"][2]["epsilon"] == PARAMS.epsilon()  # its own round's figure still shown
    assert alice["spent_epsilon"] is None and "no record-level bound" in alice["detail"]
