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
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from fedledger.audit.errors import ChainRolledBack, ChainUnavailable, NoLedger, WrongChain

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
    block_hash: bytes | None = None  # of ``block``, to notice a rollback that re-mined past it

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


@dataclass(frozen=True)
class DeploymentFacts:
    """What the audit was configured with (a deployment file): the chain must agree, or no audit."""

    chain_id: int
    block: int | None = None
    tx_hash: str | None = None


class LedgerIndex:
    """Reads the ledger's events incrementally; ``snapshot()`` returns an up-to-date view.

    ``confirmations`` keeps the newest blocks out of the index (for chains that reorganise);
    a local chain needs none. The index fails closed: before it reads any event it checks that
    there is contract code at the address and, given ``expected``, that the chain id and the
    deployment transaction's block are as configured; on every refresh it checks that the last
    block it indexed is still on the chain. A rollback drops the index (and calls
    ``on_rollback``, for whatever was derived from it) and raises ChainRolledBack; the next
    snapshot rebuilds from the deployment block.
    """

    def __init__(
        self,
        ledger: LedgerClient,
        *,
        confirmations: int = 0,
        expected: DeploymentFacts | None = None,
        on_rollback: Callable[[], None] | None = None,
    ) -> None:
        if confirmations < 0:
            raise ValueError("confirmations must be >= 0")
        self.ledger = ledger
        self.confirmations = confirmations
        self.expected = expected
        self.on_rollback = on_rollback
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
            chain_head = self.call_chain("the block number", lambda: int(self.ledger.w3.eth.block_number))
            head = chain_head - self.confirmations
            if self._snapshot is not None:
                self._check_not_rolled_back(self._snapshot, chain_head)
            current = self._snapshot or self._start(chain_head)
            if head > current.block:
                # the hash first: if the chain changes while events are read, the next check sees it
                head_hash = self._block_hash(head)
                old = current
                current = self.call_chain(f"events in blocks {old.block + 1}..{head}", lambda: self._extend(old, head))
                current = replace(current, block_hash=head_hash)
            self._snapshot = current
            return current

    def _block_hash(self, number: int) -> bytes | None:
        block = self.call_chain(f"block {number}", lambda: self.ledger.w3.eth.get_block(number))
        value = block.get("hash") if block is not None else None
        return bytes(value) if value is not None else None

    def _start(self, chain_head: int) -> LedgerSnapshot:
        """An empty snapshot, once the chain is shown to hold the ledger the audit is configured for."""
        address, where = self.ledger.address, self._endpoint()
        chain_id = self.call_chain("the chain id", lambda: int(self.ledger.w3.eth.chain_id))
        expected = self.expected
        if expected is not None and chain_id != expected.chain_id:
            raise WrongChain(
                f"the chain at {where} has chain id {chain_id}, "
                f"but the ledger was deployed on chain {expected.chain_id}"
            )
        if expected is not None and expected.block is not None and chain_head < expected.block:
            raise NoLedger(
                f"the chain at {where} is at block {chain_head}, before the ledger's deployment block "
                f"{expected.block}: another chain, or one that restarted without its state"
            )
        code = self.call_chain(f"the code at {address}", lambda: bytes(self.ledger.w3.eth.get_code(address)))
        if not code:
            raise NoLedger(
                f"no ledger contract code at {address} on chain {chain_id} ({where}): an account without code, "
                "or a chain that restarted without its state"
            )
        if expected is not None and expected.block is not None and expected.tx_hash:
            self._check_deployment(expected, expected.tx_hash)
        return LedgerSnapshot(self.ledger.from_block - 1, chain_id, address)

    def _check_deployment(self, expected: DeploymentFacts, tx_hash: str) -> None:
        from web3.exceptions import TransactionNotFound

        def receipt() -> object:
            try:
                return self.ledger.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None

        found = self.call_chain("the deployment transaction", receipt)
        if found is None:
            raise WrongChain(f"the ledger's deployment transaction {tx_hash} is not on the chain at {self._endpoint()}")
        block = int(found["blockNumber"])  # type: ignore[index]
        created = str(found.get("contractAddress") or "")  # type: ignore[attr-defined]
        if block != expected.block or created.lower() != self.ledger.address.lower():
            raise WrongChain(
                f"the ledger was configured as deployed at {self.ledger.address} in block {expected.block}, "
                f"but its deployment transaction created {created or 'no contract'} in block {block}"
            )

    def _check_not_rolled_back(self, current: LedgerSnapshot, chain_head: int) -> None:
        """The last indexed block is still the chain's; otherwise drop the index and say so."""
        if current.block < 0 or current.block_hash is None:
            return
        if chain_head >= current.block and self._block_hash(current.block) == current.block_hash:
            return
        self._snapshot = None
        if self.on_rollback is not None:
            self.on_rollback()
        raise ChainRolledBack(
            f"the chain at {self._endpoint()} was rolled back: the audit had indexed block {current.block}, "
            f"the chain's head is now block {chain_head}"
            + ("" if chain_head < current.block else " and holds another block at that height")
            + "; the index was dropped and is rebuilt on the next request"
        )

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
