"""An incremental, in-memory index of the ledger's events, refreshed block range by block range.

Events are immutable once mined, so each block is read once: a refresh asks the chain for its
head and reads only the blocks after the last one indexed. Every refresh produces a new frozen
snapshot, so a request works on one consistent view of the ledger while another refreshes.
Membership (who was an active institution under which SM9 identity, and k) is replayed from the
membership events, which gives it as of any point in the chain's history, not only now.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from fedledger.audit.errors import ChainUnavailable

if TYPE_CHECKING:
    from fedledger.chain.client import (
        AccessRecorded,
        EventMeta,
        GlobalModelPosted,
        LedgerClient,
        MembershipEvent,
        RoundOpened,
        UpdateSubmitted,
    )

T = TypeVar("T")

Position = tuple[int, int]  # (block number, log index): total order of events on the chain


def position(meta: EventMeta) -> Position:
    return (meta.block_number, meta.log_index)


@dataclass(frozen=True)
class MembershipState:
    """Who was an active institution (lower-case address -> SM9 id) and k, at one point in time."""

    active: dict[str, str]
    sm9_ids: dict[str, str]  # every address ever added -> its latest SM9 id
    threshold: int


@dataclass(frozen=True)
class LedgerSnapshot:
    """The ledger's events up to ``block``; collections are not modified after construction."""

    block: int
    chain_id: int
    contract: str
    opened: dict[int, RoundOpened] = field(default_factory=dict)
    updates: dict[int, list[UpdateSubmitted]] = field(default_factory=dict)
    posted: dict[int, GlobalModelPosted] = field(default_factory=dict)
    accesses: list[AccessRecorded] = field(default_factory=list)
    membership: list[MembershipEvent] = field(default_factory=list)

    @property
    def rounds(self) -> list[int]:
        return sorted(self.opened)

    @property
    def latest_round(self) -> int | None:
        return max(self.opened) if self.opened else None

    def membership_at(self, at: Position | None = None) -> MembershipState:
        """Membership just before the event at ``at`` (None: after every indexed event)."""
        active: dict[str, str] = {}
        ids: dict[str, str] = {}
        threshold = 0
        end = len(self.membership)
        if at is not None:
            end = bisect_left([position(e.meta) for e in self.membership], at)
        for event in self.membership[:end]:
            if event.name == "InstitutionAdded":
                address = str(event.args["institution"]).lower()
                active[address] = ids[address] = str(event.args["sm9Id"])
            elif event.name == "InstitutionRemoved":
                active.pop(str(event.args["institution"]).lower(), None)
            elif event.name == "ThresholdChanged":
                threshold = int(event.args["current"])
        return MembershipState(active, ids, threshold)


def redacted_url(url: str) -> str:
    """scheme://host:port of an RPC URL: paths and queries may carry API keys."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else "the RPC endpoint"


class LedgerIndex:
    """Reads the ledger's events incrementally; ``snapshot()`` returns an up-to-date view.

    ``confirmations`` keeps the newest blocks out of the index (for chains that reorganise);
    a local chain needs none.
    """

    def __init__(self, ledger: LedgerClient, *, confirmations: int = 0) -> None:
        if confirmations < 0:
            raise ValueError("confirmations must be >= 0")
        self.ledger = ledger
        self.confirmations = confirmations
        self._lock = threading.Lock()
        self._snapshot: LedgerSnapshot | None = None

    def _endpoint(self) -> str:
        provider = getattr(self.ledger.w3, "provider", None)
        return redacted_url(str(getattr(provider, "endpoint_uri", "") or ""))

    def call_chain(self, what: str, action: Callable[[], T]) -> T:
        """Run a chain read; connection and RPC failures become ChainUnavailable (HTTP 503)."""
        from web3.exceptions import Web3Exception

        from fedledger.chain.errors import LedgerError

        try:
            return action()
        except (OSError, Web3Exception, LedgerError) as exc:
            raise ChainUnavailable(
                f"cannot read {what} from the chain at {self._endpoint()}: {type(exc).__name__}: {exc}"
            ) from None

    def snapshot(self) -> LedgerSnapshot:
        """The index brought up to the chain's current head (minus ``confirmations``)."""
        with self._lock:
            head = self.call_chain("the block number", lambda: int(self.ledger.w3.eth.block_number))
            head -= self.confirmations
            current = self._snapshot
            if current is None:
                chain_id = self.call_chain("the chain id", lambda: self.ledger.chain_id)
                current = LedgerSnapshot(self.ledger.from_block - 1, chain_id, self.ledger.address)
            if head > current.block:
                current = self.call_chain(
                    f"events in blocks {current.block + 1}..{head}", lambda: self._extend(current, head)
                )
            self._snapshot = current
            return current

    def _extend(self, old: LedgerSnapshot, head: int) -> LedgerSnapshot:
        ledger = self.ledger
        start = old.block + 1
        opened = dict(old.opened)
        for event in ledger.rounds_opened(from_block=start, to_block=head):
            opened[event.round] = event
        updates = {r: list(events) for r, events in old.updates.items()}
        for update in ledger.updates_submitted(from_block=start, to_block=head):
            updates.setdefault(update.round, []).append(update)
        posted = dict(old.posted)
        for post in ledger.global_models_posted(from_block=start, to_block=head):
            posted[post.round] = post
        accesses = old.accesses + ledger.access_records(from_block=start, to_block=head)
        membership = old.membership + ledger.membership_events(from_block=start, to_block=head)
        return LedgerSnapshot(head, old.chain_id, old.contract, opened, updates, posted, accesses, membership)
