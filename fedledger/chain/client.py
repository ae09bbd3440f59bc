"""A typed client for the FederatedLedger contract: one method per contract function and event.

Transactions are signed locally with an eth-account ``LocalAccount`` (works with any RPC endpoint,
no unlocked node accounts needed) and waited for. Reverts, whether found while estimating gas or
in a mined receipt, surface as the ``fedledger.chain.errors`` exception for the contract's custom
error. Event readers page through block ranges, since public RPC endpoints cap ``eth_getLogs``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, TypeVar, cast

from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from fedledger.chain.approvals import (
    GlobalModelRecord,
    LedgerDomain,
    MembershipChange,
    PrivacyBudgetSetting,
    privacy_budget_typed_data,
    sign_global_model,
    sign_membership_change,
    sign_typed_data,
)
from fedledger.chain.errors import ErrorDecoder, LedgerError, LedgerRevert, revert_data_of
from fedledger.chain.settings import RECEIPT_TIMEOUT_SECONDS, RPC_TIMEOUT_SECONDS
from fedledger.chain.tx_fields import RECEIPT_POLL_SECONDS, bare_receipt, batched_fields
from fedledger.digests import as_bytes32
from fedledger.widths import PPM

if TYPE_CHECKING:
    from web3 import Web3
    from web3.contract import Contract
    from web3.types import TxParams

DEFAULT_LOG_PAGE = 2_000
GAS_MARGIN = Fraction(6, 5)  # estimates are exact for this contract; the margin covers state drift

T = TypeVar("T")


# ---------------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block_number: int
    gas_used: int


@dataclass(frozen=True)
class RoundState:
    started: bool
    round: int
    open: bool
    update_count: int

    @property
    def next_round(self) -> int:
        """The round ``openRound`` accepts next (meaningful when no round is open)."""
        return self.round + 1 if self.started else 0


@dataclass(frozen=True)
class Nonces:
    global_model: int
    membership: int


@dataclass(frozen=True)
class Institution:
    address: str
    active: bool
    registered: bool
    next_round: int
    sm9_id: str


@dataclass(frozen=True)
class RosterEntry:
    """A registered institution as the roster lists it: what signing, sealing and counting need."""

    address: str
    sm9_id: str
    active: bool


@dataclass(frozen=True)
class RosterView:
    """The roster as read once: a step that needs both the members' identities and the active set
    (who reads a sealed file) asks the chain one time, not once for each."""

    members: tuple[RosterEntry, ...]

    def active_institutions(self) -> list[RosterEntry]:
        return [m for m in self.members if m.active]

    def identities(self) -> dict[str, str]:
        """Lower-case address -> SM9 identity, for every member ever registered."""
        return {m.address.lower(): m.sm9_id for m in self.members}


@dataclass(frozen=True)
class EventMeta:
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class RoundOpened:
    round: int
    base_cid: str
    base_digest: bytes
    aggregator: str
    meta: EventMeta


@dataclass(frozen=True)
class UpdateSubmitted:
    round: int
    institution: str
    cid: str
    digest: bytes
    mapping_digest: bytes
    num_samples: int
    width_rate_ppm: int
    sm9_signature: bytes
    meta: EventMeta

    @property
    def width_rate(self) -> Fraction:
        return Fraction(self.width_rate_ppm, PPM)


@dataclass(frozen=True)
class GlobalModelPosted:
    round: int
    cid: str
    digest: bytes
    updates_root: bytes
    manifest_cid: str
    manifest_digest: bytes
    sm9_threshold_signature: bytes
    update_count: int
    nonce: int
    approvers: tuple[str, ...]
    meta: EventMeta


def _meta_of(log: Mapping[str, Any]) -> EventMeta:
    return EventMeta(int(log["blockNumber"]), "0x" + bytes(log["transactionHash"]).hex(), int(log["logIndex"]))


def _global_model_posted(args: dict[str, Any], meta: EventMeta) -> GlobalModelPosted:
    """The event's arguments; ``model`` is the contract's GlobalModel struct (a tuple in field order,
    or a mapping by name, depending on the web3 version)."""
    model = args["model"]
    if isinstance(model, Mapping):
        fields = tuple(model[k] for k in ("round", "cid", "digest", "updatesRoot", "manifestCid", "manifestDigest"))
    else:
        fields = tuple(model)[:6]
    _, cid, digest, updates_root, manifest_cid, manifest_digest = fields
    return GlobalModelPosted(
        args["round"],
        cid,
        bytes(digest),
        bytes(updates_root),
        manifest_cid,
        bytes(manifest_digest),
        bytes(args["sm9ThresholdSignature"]),
        args["updateCount"],
        args["nonce"],
        tuple(args["approvers"]),
        meta,
    )


@dataclass(frozen=True)
class AccessRecorded:
    accessor: str
    cid_hash: bytes
    cid: str
    purpose: str
    meta: EventMeta


@dataclass(frozen=True)
class MembershipEvent:
    """InstitutionAdded / InstitutionRemoved / ThresholdChanged / AggregatorChanged /
    MembershipChangeApproved, with the event's arguments in ``args``."""

    name: str
    args: dict[str, Any]
    meta: EventMeta


# ---------------------------------------------------------------------------------- client


def _checksummed(abi_type: str, value: Any) -> Any:
    """An ABI value with its addresses in checksum form (the ledger's views return no tuples)."""
    if abi_type == "address":
        return to_checksum_address(value)
    if abi_type.startswith("address["):
        return [_checksummed(abi_type[: abi_type.rindex("[")], v) for v in value]
    return value


def web3_over_http(rpc_url: str, timeout: float, **provider_options: Any) -> Web3:
    """A Web3 over HTTP(S) that asks the endpoint its chain id once.

    web3 checks the chain id before every call and transaction (its validation middleware); uncached,
    that doubles a role's requests (a round sent hundreds of ``eth_chainId``). An endpoint's chain id
    does not change under a running client, which caches it itself too (``LedgerClient.chain_id``).
    """
    from web3 import HTTPProvider, Web3
    from web3.types import RPCEndpoint

    provider = HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": timeout},
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
        request_cache_validation_threshold=None,  # nothing cached needs validating (and asking costs a call)
        **provider_options,
    )
    return Web3(provider)


Logged = tuple[str, dict[str, Any], EventMeta]  # (event name, decoded arguments, where it was logged)


class LogRangeCache:
    """Every decoded log of the contract for the block range already read, so the ledger's many event
    queries (each round from the deploy block, by event and filter) share one ``eth_getLogs`` scan per
    newly mined range instead of one per query. Blocks are taken as final, as on the chains this runs on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._read: tuple[int, int, list[Logged]] | None = None  # (first block, last block, logs)

    def read(self, start: int, end: int, fetch: Callable[[int, int], list[Logged]]) -> list[Logged]:
        with self._lock:
            cached = self._read
        if cached is None or cached[0] != start or cached[1] > end:
            found = fetch(start, end)
        else:
            found = cached[2] + (fetch(cached[1] + 1, end) if end > cached[1] else [])
        with self._lock:
            self._read = (start, end, found)  # after a rollback (head below the last read) the full read replaces it
        return found


def _matches(args: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    """Whether decoded event arguments hold every filter value (addresses compared case-insensitively)."""
    for name, wanted in filters.items():
        value = args.get(name)
        if isinstance(wanted, str) and isinstance(value, str):
            if value.lower() != wanted.lower():
                return False
        elif isinstance(wanted, bytes | bytearray):
            if not isinstance(value, bytes | bytearray) or bytes(value) != bytes(wanted):
                return False
        elif value != wanted:
            return False
    return True


class LedgerClient:
    """Talks to one deployed FederatedLedger. ``from_block`` bounds event searches from below
    (the deployment block, when known)."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        abi: list[dict[str, Any]],
        *,
        from_block: int = 0,
        receipt_timeout_seconds: float = RECEIPT_TIMEOUT_SECONDS,
    ) -> None:
        self.w3 = w3
        self.receipt_timeout_seconds = receipt_timeout_seconds
        self.address = to_checksum_address(address)
        self.abi = abi
        self.from_block = from_block
        self.contract: Contract = w3.eth.contract(address=self.address, abi=abi)
        self._decoder = ErrorDecoder(abi)
        self._chain_id: int | None = None
        self._log_cache = LogRangeCache()
        self._topics: dict[str, str] | None = None  # topic 0 (hex) -> event name, from the ABI

    @classmethod
    def connect(
        cls,
        rpc_url: str,
        address: str,
        abi: list[dict[str, Any]],
        *,
        from_block: int = 0,
        rpc_timeout_seconds: float = RPC_TIMEOUT_SECONDS,
        receipt_timeout_seconds: float = RECEIPT_TIMEOUT_SECONDS,
    ) -> LedgerClient:
        w3 = web3_over_http(rpc_url, rpc_timeout_seconds)
        return cls(w3, address, abi, from_block=from_block, receipt_timeout_seconds=receipt_timeout_seconds)

    def __repr__(self) -> str:
        return f"LedgerClient({self.address})"

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def domain(self) -> LedgerDomain:
        return LedgerDomain(self.chain_id, self.address)

    # ------------------------------------------------------------------ transactions

    def open_round(self, sender: LocalAccount, round: int, base_cid: str, base_digest: bytes) -> TxResult:
        """Aggregator: open ``round`` from the base model (round r > 0: round r-1's global model)."""
        fn = self.contract.functions.openRound(round, base_cid, as_bytes32(base_digest, "base digest"))
        return self._transact(sender, f"openRound(round {round})", fn)

    def submit_update(
        self,
        sender: LocalAccount,
        round: int,
        cid: str,
        digest: bytes,
        mapping_digest: bytes,
        num_samples: int,
        width_rate_ppm: int,
        sm9_signature: bytes,
    ) -> TxResult:
        """Institution: record its update for the open round (once per round)."""
        fn = self.contract.functions.submitUpdate(
            round,
            cid,
            as_bytes32(digest, "update digest"),
            as_bytes32(mapping_digest, "mapping digest"),
            num_samples,
            width_rate_ppm,
            bytes(sm9_signature),
        )
        return self._transact(sender, f"submitUpdate(round {round}, {sender.address})", fn)

    def post_global_model(
        self, sender: LocalAccount, record: GlobalModelRecord, approvals: Sequence[bytes]
    ) -> TxResult:
        """Aggregator: post the round's global model with k approvals; closes the round."""
        fn = self._post_global_model_call(record, approvals)
        return self._transact(sender, f"postGlobalModel(round {record.round})", fn)

    def simulate_post_global_model(self, sender: str, record: GlobalModelRecord, approvals: Sequence[bytes]) -> None:
        """Run ``postGlobalModel`` as an ``eth_call`` from ``sender``: raises the contract's error, sends nothing."""
        fn = self._post_global_model_call(record, approvals)
        self._guard(
            f"postGlobalModel(round {record.round}) simulated",
            lambda: fn.call({"from": to_checksum_address(sender)}),
        )

    def _post_global_model_call(self, record: GlobalModelRecord, approvals: Sequence[bytes]) -> Any:
        return self.contract.functions.postGlobalModel(
            record.contract_struct(), bytes(record.sm9_signature), [bytes(a) for a in approvals]
        )

    def record_access(self, sender: LocalAccount, cid: str, purpose: str) -> TxResult:
        """Member: log that ``sender`` retrieved ``cid`` and why."""
        return self._transact(sender, f"recordAccess({cid})", self.contract.functions.recordAccess(cid, purpose))

    def add_institution(
        self, sender: LocalAccount, account: str, sm9_id: str, new_threshold: int, approvals: Sequence[bytes]
    ) -> TxResult:
        fn = self.contract.functions.addInstitution(
            to_checksum_address(account), sm9_id, new_threshold, [bytes(a) for a in approvals]
        )
        return self._transact(sender, f"addInstitution({account})", fn)

    def remove_institution(
        self, sender: LocalAccount, account: str, new_threshold: int, approvals: Sequence[bytes]
    ) -> TxResult:
        fn = self.contract.functions.removeInstitution(
            to_checksum_address(account), new_threshold, [bytes(a) for a in approvals]
        )
        return self._transact(sender, f"removeInstitution({account})", fn)

    def set_threshold(self, sender: LocalAccount, new_threshold: int, approvals: Sequence[bytes]) -> TxResult:
        fn = self.contract.functions.setThreshold(new_threshold, [bytes(a) for a in approvals])
        return self._transact(sender, f"setThreshold({new_threshold})", fn)

    def set_aggregator(self, sender: LocalAccount, account: str, approvals: Sequence[bytes]) -> TxResult:
        fn = self.contract.functions.setAggregator(to_checksum_address(account), [bytes(a) for a in approvals])
        return self._transact(sender, f"setAggregator({account})", fn)

    def apply_membership_change(
        self, sender: LocalAccount, change: MembershipChange, approvals: Sequence[bytes]
    ) -> TxResult:
        """Send whichever function ``change`` describes."""
        from fedledger.chain.approvals import MembershipAction

        if change.action is MembershipAction.ADD_INSTITUTION:
            return self.add_institution(sender, change.account, change.sm9_id, change.threshold, approvals)
        if change.action is MembershipAction.REMOVE_INSTITUTION:
            return self.remove_institution(sender, change.account, change.threshold, approvals)
        if change.action is MembershipAction.SET_THRESHOLD:
            return self.set_threshold(sender, change.threshold, approvals)
        return self.set_aggregator(sender, change.account, approvals)

    def set_privacy_budget(
        self, sender: LocalAccount, budget: PrivacyBudgetSetting, approvals: Sequence[bytes]
    ) -> TxResult:
        fn = self.contract.functions.setPrivacyBudget(
            budget.epsilon_micro, budget.delta_pico, [bytes(a) for a in approvals]
        )
        return self._transact(sender, f"setPrivacyBudget({budget.epsilon}, {budget.delta})", fn)

    # ------------------------------------------------------------------ approvals

    def approve_global_model(self, approver: LocalAccount, record: GlobalModelRecord) -> bytes:
        """``approver``'s EIP-712 approval of ``record`` at the ledger's current nonce."""
        return sign_global_model(approver, self.domain, record, self.nonces().global_model)

    def approve_membership_change(self, approver: LocalAccount, change: MembershipChange) -> bytes:
        return sign_membership_change(approver, self.domain, change, self.nonces().membership)

    def approve_privacy_budget(self, approver: LocalAccount, budget: PrivacyBudgetSetting) -> bytes:
        """``approver``'s EIP-712 approval of ``budget`` at the ledger's current membership nonce."""
        return sign_typed_data(approver, privacy_budget_typed_data(self.domain, budget, self.nonces().membership))

    # ------------------------------------------------------------------ views

    def privacy_budget(self) -> PrivacyBudgetSetting:
        """The consortium's (epsilon, delta) budget as the contract holds it."""
        epsilon_micro, delta_pico = self._call("privacyBudget()", self.contract.functions.privacyBudget())
        return PrivacyBudgetSetting(int(epsilon_micro), int(delta_pico))

    def aggregator(self) -> str:
        return str(self._call("aggregator()", self.contract.functions.aggregator()))

    def threshold(self) -> int:
        return int(self._call("threshold()", self.contract.functions.threshold()))

    def active_institution_count(self) -> int:
        return int(self._call("activeInstitutionCount()", self.contract.functions.activeInstitutionCount()))

    def nonces(self) -> Nonces:
        g, m = self._call("nonces()", self.contract.functions.nonces())
        return Nonces(int(g), int(m))

    def round_state(self) -> RoundState:
        started, rnd, is_open, count = self._call("roundState()", self.contract.functions.roundState())
        return RoundState(bool(started), int(rnd), bool(is_open), int(count))

    def global_digest(self, round: int) -> bytes | None:
        """Round ``round``'s posted global digest, or None while it has none."""
        digest = bytes(self._call("globalDigest()", self.contract.functions.globalDigest(round)))
        return None if digest == bytes(32) else digest

    def institution(self, account: str) -> Institution:
        address = to_checksum_address(account)
        active, registered, next_round, sm9_id = self._call(
            "institution()", self.contract.functions.institution(address)
        )
        return Institution(address, bool(active), bool(registered), int(next_round), str(sm9_id))

    def institutions(self) -> list[Institution]:
        """Every institution ever registered, active or not, in registration order."""
        accounts, _ids, _active = self._call("institutions()", self.contract.functions.institutions())
        return [self.institution(account) for account in accounts]

    def roster(self) -> list[RosterEntry]:
        """Every institution ever registered with its SM9 id and whether it is active, in one call
        (``institutions`` also reads each one's round progress: one more call per member)."""
        accounts, ids, active = self._call("institutions()", self.contract.functions.institutions())
        return [
            RosterEntry(to_checksum_address(a), str(i), bool(on))
            for a, i, on in zip(accounts, ids, active, strict=True)
        ]

    def active_institutions(self) -> list[RosterEntry]:
        return [m for m in self.roster() if m.active]

    def roster_view(self) -> RosterView:
        return RosterView(tuple(self.roster()))

    def has_submitted(self, round: int, account: str) -> bool:
        """Whether ``account`` submitted to ``round``, valid for the current round (past rounds:
        read ``updates_submitted``)."""
        return self.institution(account).next_round > round

    def sm9_id_owner(self, sm9_id: str) -> str | None:
        owner = str(self._call("sm9IdOwner()", self.contract.functions.sm9IdOwner(sm9_id)))
        return None if int(owner, 16) == 0 else owner

    def domain_separator(self) -> bytes:
        return bytes(self._call("domainSeparator()", self.contract.functions.domainSeparator()))

    def global_model_approval_digest(self, record: GlobalModelRecord) -> bytes:
        """The digest the contract expects approvers to sign for ``record`` (current nonce)."""
        fn = self.contract.functions.globalModelApprovalDigest(record.contract_struct(), bytes(record.sm9_signature))
        return bytes(self._call("globalModelApprovalDigest()", fn))

    def membership_change_approval_digest(self, change: MembershipChange) -> bytes:
        fn = self.contract.functions.membershipChangeApprovalDigest(
            int(change.action), to_checksum_address(change.account), change.sm9_id, change.threshold
        )
        return bytes(self._call("membershipChangeApprovalDigest()", fn))

    # ------------------------------------------------------------------ events

    def rounds_opened(
        self,
        *,
        round: int | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        page_size: int = DEFAULT_LOG_PAGE,
    ) -> list[RoundOpened]:
        return [
            RoundOpened(a["round"], a["baseCid"], bytes(a["baseDigest"]), a["aggregator"], meta)
            for a, meta in self._events("RoundOpened", {"round": round}, from_block, to_block, page_size)
        ]

    def updates_submitted(
        self,
        *,
        round: int | None = None,
        institution: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        page_size: int = DEFAULT_LOG_PAGE,
    ) -> list[UpdateSubmitted]:
        filters = {"round": round, "institution": to_checksum_address(institution) if institution else None}
        return [
            UpdateSubmitted(
                a["round"],
                a["institution"],
                a["cid"],
                bytes(a["digest"]),
                bytes(a["mappingDigest"]),
                a["numSamples"],
                a["widthRate"],
                bytes(a["sm9Signature"]),
                meta,
            )
            for a, meta in self._events("UpdateSubmitted", filters, from_block, to_block, page_size)
        ]

    def global_models_posted(
        self,
        *,
        round: int | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        page_size: int = DEFAULT_LOG_PAGE,
    ) -> list[GlobalModelPosted]:
        return [
            _global_model_posted(a, meta)
            for a, meta in self._events("GlobalModelPosted", {"round": round}, from_block, to_block, page_size)
        ]

    def access_records(
        self,
        *,
        accessor: str | None = None,
        cid: str | None = None,
        from_block: int | None = None,
        to_block: int | None = None,
        page_size: int = DEFAULT_LOG_PAGE,
    ) -> list[AccessRecorded]:
        from eth_utils import keccak

        filters = {
            "accessor": to_checksum_address(accessor) if accessor else None,
            "cidHash": keccak(text=cid) if cid is not None else None,
        }
        return [
            AccessRecorded(a["accessor"], bytes(a["cidHash"]), a["cid"], a["purpose"], meta)
            for a, meta in self._events("AccessRecorded", filters, from_block, to_block, page_size)
        ]

    def membership_events(
        self, *, from_block: int | None = None, to_block: int | None = None, page_size: int = DEFAULT_LOG_PAGE
    ) -> list[MembershipEvent]:
        """All membership history, in chain order."""
        out: list[MembershipEvent] = []
        for name in (
            "InstitutionAdded",
            "InstitutionRemoved",
            "ThresholdChanged",
            "AggregatorChanged",
            "PrivacyBudgetChanged",
            "MembershipChangeApproved",
        ):
            found = self._events(name, {}, from_block, to_block, page_size)
            out += [MembershipEvent(name, args, meta) for args, meta in found]
        return sorted(out, key=lambda e: (e.meta.block_number, e.meta.log_index))

    def _events(
        self,
        name: str,
        filters: dict[str, Any],
        from_block: int | None,
        to_block: int | None,
        page_size: int,
    ) -> Iterator[tuple[dict[str, Any], EventMeta]]:
        if page_size < 1:
            raise ValueError("page_size must be at least 1 block")
        argument_filters = {k: v for k, v in filters.items() if v is not None}
        start = self.from_block if from_block is None else from_block
        end = self._head() if to_block is None else to_block
        if from_block is not None or to_block is not None:  # an explicit range: read it as asked
            event = getattr(self.contract.events, name)
            for page_start in range(start, end + 1, page_size):
                page_end = min(page_start + page_size - 1, end)
                logs = event().get_logs(from_block=page_start, to_block=page_end, argument_filters=argument_filters)
                for log in sorted(logs, key=lambda entry: (entry["blockNumber"], entry["logIndex"])):
                    yield dict(log["args"]), _meta_of(log)
            return
        logged = self._log_cache.read(start, end, lambda first, last: self._all_logs(first, last, page_size))
        for event_name, args, meta in logged:
            if event_name == name and _matches(args, argument_filters):
                yield args, meta

    def event_topic(self, name: str) -> str:
        """Event ``name``'s signature hash (a log's topic 0) as lower-case hex with 0x."""
        return "0x" + bytes.fromhex(str(getattr(self.contract.events, name).topic).removeprefix("0x")).hex()

    def _all_logs(self, first: int, last: int, page_size: int) -> list[Logged]:
        """Every log of the contract in blocks ``first``..``last``, decoded, in chain order."""
        if self._topics is None:
            events = [e["name"] for e in self.abi if e.get("type") == "event" and not e.get("anonymous")]
            self._topics = {self.event_topic(name): name for name in events}
        found: list[Logged] = []
        for page_start in range(first, last + 1, page_size):
            page_end = min(page_start + page_size - 1, last)
            logs = self.w3.eth.get_logs({"address": self.address, "fromBlock": page_start, "toBlock": page_end})
            for log in sorted(logs, key=lambda entry: (entry["blockNumber"], entry["logIndex"])):
                topics = log.get("topics") or []
                name = self._topics.get("0x" + bytes(topics[0]).hex()) if topics else None
                if name is None:
                    continue  # not one of this contract's events
                decoded = getattr(self.contract.events, name)().process_log(log)
                found.append((name, dict(decoded["args"]), _meta_of(log)))
        return found

    # ------------------------------------------------------------------ plumbing

    def _call(self, what: str, fn: Any) -> Any:
        return self._guard(what, lambda: self._plain_call(fn))

    def _head(self) -> int:
        """The chain's latest block number, asked bare (see ``_plain_call``); web3 answers any error."""
        from web3.types import RPCEndpoint

        result = self.w3.provider.make_request(RPCEndpoint("eth_blockNumber"), []).get("result")
        return int(result, 16) if isinstance(result, str) else int(self.w3.eth.block_number)

    def _plain_call(self, fn: Any) -> Any:
        """A view as one bare ``eth_call``, decoded as web3 decodes it (addresses checksummed).

        web3's request stack (middleware, formatters, validation) costs ~2 ms of CPU per call, several
        times the call itself; roles read views dozens of times a round. Anything unusual (an error
        reply, undecodable data) is asked again through web3, which raises exactly what it always did.
        """
        from eth_utils.abi import get_abi_output_types
        from web3.types import RPCEndpoint

        reply = self.w3.provider.make_request(
            RPCEndpoint("eth_call"), [{"to": self.address, "data": fn._encode_transaction_data()}, "latest"]
        )
        result = reply.get("result")
        if "error" in reply or not isinstance(result, str) or len(result) <= 2:
            return fn.call()
        types = get_abi_output_types(fn.abi)
        try:
            values = self.w3.codec.decode(types, bytes.fromhex(result.removeprefix("0x")))
        except Exception:  # malformed for these types: let web3 say how
            return fn.call()
        normalized = [_checksummed(t, v) for t, v in zip(types, values, strict=True)]
        return normalized[0] if len(normalized) == 1 else tuple(normalized)

    def _guard(self, what: str, action: Callable[[], T]) -> T:
        from web3.exceptions import ContractLogicError

        try:
            return action()
        except ContractLogicError as exc:
            data = revert_data_of(exc)
            if data is None:
                raise LedgerRevert({"detail": str(exc)}, call=what) from exc
            raise self._decoder.decode(data, call=what) from None

    def _transact(self, sender: LocalAccount, what: str, fn: Any) -> TxResult:
        tx = batched_fields(self.w3, self.chain_id, sender.address, self.address, fn._encode_transaction_data())
        if tx is None:  # a revert while estimating, or an endpoint that batches nothing: web3 says what and how
            tx = self._guard(
                what,
                lambda: fn.build_transaction(
                    {
                        "from": sender.address,
                        "chainId": self.chain_id,
                        "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
                    }
                ),
            )
        tx["gas"] = int(tx["gas"] * GAS_MARGIN)
        signed = sender.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        mined = bare_receipt(self.w3, tx_hash)  # local chains mine as they accept: there at once
        if mined is None:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout_seconds, poll_latency=RECEIPT_POLL_SECONDS
            )
            mined = (int(receipt["status"]), int(receipt["blockNumber"]), int(receipt["gasUsed"]))
        status, block, gas_used = mined
        if status != 1:
            raise self._replay_failure(what, tx, block)
        return TxResult("0x" + bytes(tx_hash).hex(), block, gas_used)

    def _replay_failure(self, what: str, tx: Any, block: int) -> LedgerError:
        """Re-run a failed transaction as a call to learn its revert reason."""
        from web3.exceptions import ContractLogicError

        call = {k: tx[k] for k in ("from", "to", "data", "value", "gas") if k in tx}
        try:
            self.w3.eth.call(cast("TxParams", call), block - 1)
        except ContractLogicError as exc:
            data = revert_data_of(exc)
            if data is not None:
                return self._decoder.decode(data, call=what)
            return LedgerRevert({"detail": str(exc)}, call=what)
        return LedgerRevert({"detail": f"transaction failed in block {block} (ran out of gas?)"}, call=what)
