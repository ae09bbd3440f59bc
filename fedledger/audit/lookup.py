"""Finding what a question is about in one ledger snapshot, or saying why it is not there.

Each function answers NotFound / Conflict with a message naming the round, address or state, so
the service's query methods stay a few lines long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.audit.errors import NotFound
from fedledger.audit.index import LedgerSnapshot, position
from fedledger.audit.params import check_round_number, parse_address
from fedledger.protocol import UpdateEntry

if TYPE_CHECKING:
    from fedledger.chain.client import GlobalModelPosted, RoundOpened, UpdateSubmitted


def opened_round(snap: LedgerSnapshot, round: int) -> RoundOpened:
    """The ``RoundOpened`` event of ``round``; NotFound when it was never opened."""
    check_round_number(round)
    event = snap.opened.get(round)
    if event is None:
        latest = snap.latest_round
        have = "no round has been opened yet" if latest is None else f"rounds 0..{latest} exist"
        raise NotFound(f"round {round} was never opened on this ledger ({have})")
    return event


def posted_round(snap: LedgerSnapshot, round: int) -> GlobalModelPosted:
    """The ``GlobalModelPosted`` event of ``round``; NotFound while the round is open."""
    opened_round(snap, round)
    post = snap.posted.get(round)
    if post is None:
        raise NotFound(f"round {round} is still open: no global model has been posted for it yet")
    return post


def update_of(snap: LedgerSnapshot, round: int, institution: str) -> UpdateSubmitted:
    """``institution``'s ``UpdateSubmitted`` event in ``round``."""
    opened_round(snap, round)
    address = parse_address(institution, "institution")
    for event in snap.updates.get(round, []):
        if event.institution.lower() == address.lower():
            return event
    raise NotFound(f"institution {address} submitted no update in round {round}")


def update_entry(snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateEntry:
    """The signed entry an ``UpdateSubmitted`` event stands for."""
    return UpdateEntry.from_event(snap.chain_id, snap.contract, event)


def sm9_identity_of(snap: LedgerSnapshot, event: UpdateSubmitted) -> str | None:
    """The submitter's SM9 identity when it submitted (an address may be re-added with another)."""
    state = snap.membership_at(position(event.meta))
    address = event.institution.lower()
    return state.active.get(address) or state.sm9_ids.get(address)


def round_leaves(snap: LedgerSnapshot, round: int) -> list[tuple[str, str, bytes, bytes]]:
    """(lower-case address, cid, digest, leaf) of the round's entries, in the canonical (address) order."""
    events = sorted(snap.updates.get(round, []), key=lambda e: e.institution.lower())
    return [(e.institution.lower(), e.cid, e.digest, update_entry(snap, e).leaf(e.sm9_signature)) for e in events]
