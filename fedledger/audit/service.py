"""The auditor: reads the ledger, the store and the signatures, and says what holds and what not.

Kept apart from HTTP (``fedledger.audit.api`` is a thin layer over it) so the same verdicts serve
the REST API, ``fedledger audit summary`` and tests. What is cached and what is not:

- chain events are immutable, so they are indexed once (``LedgerIndex``) and extended as blocks come;
- SM9 verification and the included-entries search depend only on event data, so their results
  are cached too;
- store content is read again for every verdict: a file altered on disk after it was checked once
  must still be flagged the next time anyone asks.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

from cryptography.hazmat.primitives import hashes
from eth_utils import is_hex_address, to_checksum_address

from fedledger.audit.errors import Conflict, InvalidParameter, NotFound
from fedledger.audit.inclusion import DEFAULT_MAX_CANDIDATES, Inclusion, find_included
from fedledger.audit.index import LedgerIndex, LedgerSnapshot, position
from fedledger.audit.models import (
    AccessRecordModel,
    ApprovalModel,
    AuditSummary,
    Check,
    Counts,
    EventRef,
    Failure,
    GlobalModelEntry,
    GlobalModelResponse,
    GlobalVerdict,
    Health,
    InclusionProof,
    InstitutionHistory,
    InstitutionModel,
    Lineage,
    LineageStep,
    MembershipEventModel,
    ModelRef,
    Page,
    RoundDetail,
    RoundListItem,
    RoundRecordModel,
    RoundVerdictSummary,
    UpdateEntryModel,
    UpdateListItem,
    UpdateVerdict,
    UpdateWithVerdict,
)
from fedledger.protocol import RoundRecord, UpdateEntry, merkle_proof, verify_proof
from fedledger.protocol.consortium import consortium_identity as default_consortium_identity
from fedledger.sm9 import Signature, SignMasterPublicKey, SM9Error, verify
from fedledger.store import CID, ContentStore, InvalidCIDError, StoreError
from fedledger.store.errors import BlockNotFoundError, ContentMismatchError

if TYPE_CHECKING:
    from web3 import Web3

    from fedledger.chain.client import (
        AccessRecorded,
        EventMeta,
        GlobalModelPosted,
        LedgerClient,
        RoundOpened,
        UpdateSubmitted,
    )
    from fedledger.chain.deploy import Deployment

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_OFFSET = 1_000_000_000
MAX_ROUND = 2**64 - 1
MAX_CID_LENGTH = 128  # the contract's limit


def _hex(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def _ref(meta: EventMeta) -> EventRef:
    return EventRef(block=meta.block_number, tx_hash=meta.tx_hash, log_index=meta.log_index)


def parse_address(text: str, what: str = "address") -> str:
    """A 0x-prefixed 20-byte hex address, checksummed; InvalidParameter otherwise."""
    if not isinstance(text, str) or not is_hex_address(text) or not text.startswith(("0x", "0X")):
        raise InvalidParameter(f"{what} {text!r} is not a 0x-prefixed 20-byte hex Ethereum address")
    return str(to_checksum_address(text))


def parse_cid(text: str) -> CID:
    if not isinstance(text, str) or not 0 < len(text) <= MAX_CID_LENGTH:
        raise InvalidParameter(f"CID must be 1..{MAX_CID_LENGTH} characters")
    try:
        return CID.parse(text)
    except InvalidCIDError as exc:
        raise InvalidParameter(f"{text!r} is not a valid CID: {exc}") from None


def _cid_key(text: str) -> object:
    """What makes two CID strings name the same content (CIDv0 and CIDv1 of one DAG agree)."""
    try:
        cid = CID.parse(text)
    except InvalidCIDError:
        return text
    return (cid.codec, cid.multihash)


def check_paging(offset: int, limit: int) -> None:
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidParameter(f"offset must be between 0 and {MAX_OFFSET}, not {offset}")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameter(f"limit must be between 1 and {MAX_LIMIT}, not {limit}")


def paginate(items: Sequence[T], offset: int, limit: int) -> Page[T]:
    check_paging(offset, limit)
    return Page[T](total=len(items), offset=offset, limit=limit, items=list(items[offset : offset + limit]))


def _check_round_number(round: int) -> None:
    if not 0 <= round <= MAX_ROUND:
        raise InvalidParameter(f"round must be between 0 and 2^64-1, not {round}")


class AuditService:
    """Read-only audit of one ledger, its content store and its SM9 signatures.

    ``consortium_identity`` is the SM9 identity round records are threshold-signed under; by
    default ``consortium:<chain id>:<contract>`` (see ``fedledger.protocol.consortium``).
    """

    def __init__(
        self,
        ledger: LedgerClient,
        store: ContentStore,
        master_public_key: SignMasterPublicKey,
        *,
        consortium_identity: str | None = None,
        confirmations: int = 0,
        max_inclusion_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.master_public_key = master_public_key
        self.index = LedgerIndex(ledger, confirmations=confirmations)
        self.max_inclusion_candidates = max_inclusion_candidates
        self._identity_override = consortium_identity
        self._signature_checks: dict[tuple[str, bytes, bytes], Check] = {}
        self._inclusions: dict[int, Inclusion] = {}
        self._cache_lock = threading.Lock()

    @classmethod
    def from_deployment(
        cls,
        deployment: Deployment,
        store: ContentStore,
        master_public_key: SignMasterPublicKey,
        *,
        w3: Web3 | None = None,
        consortium_identity: str | None = None,
        confirmations: int = 0,
    ) -> AuditService:
        return cls(
            deployment.client(w3),
            store,
            master_public_key,
            consortium_identity=consortium_identity,
            confirmations=confirmations,
        )

    def __repr__(self) -> str:
        return f"AuditService({self.ledger.address}, store={self.store.location})"

    # ------------------------------------------------------------------ plumbing

    def snapshot(self) -> LedgerSnapshot:
        """The ledger as indexed now (raises ChainUnavailable when the chain cannot be read)."""
        return self.index.snapshot()

    def consortium_identity(self, snap: LedgerSnapshot | None = None) -> str:
        if self._identity_override is not None:
            return self._identity_override
        snap = snap or self.snapshot()
        return default_consortium_identity(snap.chain_id, snap.contract)

    @staticmethod
    def _opened(snap: LedgerSnapshot, round: int) -> RoundOpened:
        _check_round_number(round)
        event = snap.opened.get(round)
        if event is None:
            latest = snap.latest_round
            have = "no round has been opened yet" if latest is None else f"rounds 0..{latest} exist"
            raise NotFound(f"round {round} was never opened on this ledger ({have})")
        return event

    @staticmethod
    def _posted(snap: LedgerSnapshot, round: int) -> GlobalModelPosted:
        AuditService._opened(snap, round)
        post = snap.posted.get(round)
        if post is None:
            raise NotFound(f"round {round} is still open: no global model has been posted for it yet")
        return post

    @staticmethod
    def _update_of(snap: LedgerSnapshot, round: int, institution: str) -> UpdateSubmitted:
        AuditService._opened(snap, round)
        address = parse_address(institution, "institution")
        for event in snap.updates.get(round, []):
            if event.institution.lower() == address.lower():
                return event
        raise NotFound(f"institution {address} submitted no update in round {round}")

    @staticmethod
    def _entry(snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateEntry:
        return UpdateEntry.from_event(snap.chain_id, snap.contract, event)

    @staticmethod
    def _sm9_identity_of(snap: LedgerSnapshot, event: UpdateSubmitted) -> str | None:
        """The submitter's SM9 identity when it submitted (an address may be re-added with another)."""
        state = snap.membership_at(position(event.meta))
        address = event.institution.lower()
        return state.active.get(address) or state.sm9_ids.get(address)

    def _leaves(self, snap: LedgerSnapshot, round: int) -> list[tuple[str, bytes]]:
        """(lower-case address, leaf) of the round's entries, in the canonical (address) order."""
        events = sorted(snap.updates.get(round, []), key=lambda e: e.institution.lower())
        return [(e.institution.lower(), self._entry(snap, e).leaf(e.sm9_signature)) for e in events]

    def _inclusion(self, snap: LedgerSnapshot, round: int) -> Inclusion | None:
        """Which entries the posted record includes; None while the round is open."""
        post = snap.posted.get(round)
        if post is None:
            return None
        with self._cache_lock:
            cached = self._inclusions.get(round)
        if cached is not None:
            return cached
        # A posted round is closed: its entries can no longer change, so the answer is final.
        result = find_included(
            self._leaves(snap, round), post.updates_root, max_candidates=self.max_inclusion_candidates
        )
        with self._cache_lock:
            self._inclusions[round] = result
        return result

    def _posted_inclusion(self, snap: LedgerSnapshot, round: int) -> Inclusion:
        inclusion = self._inclusion(snap, round)
        if inclusion is None:
            raise Conflict(f"round {round} has no posted round record yet")
        return inclusion

    # ------------------------------------------------------------------ checks

    def check_content(self, cid: str, digest: bytes) -> Check:
        """Read the content again (every block verified against the CID) and compare its SM3 digest."""
        try:
            h = hashes.Hash(hashes.SM3())
            size = 0
            for chunk in self.store.get(cid):
                h.update(chunk)
                size += len(chunk)
            actual = h.finalize()
        except InvalidCIDError:
            return Check(ok=False, detail=f"the ledger's CID {cid!r} is not a valid CID")
        except BlockNotFoundError as exc:
            return Check(ok=False, detail=f"content {cid} is missing from the store: {exc}")
        except ContentMismatchError as exc:
            return Check(ok=False, detail=f"content {cid} is corrupt in the store: {exc}")
        except StoreError as exc:
            return Check(ok=False, detail=f"content {cid} could not be read from the store: {exc}")
        if actual != digest:
            return Check(
                ok=False,
                detail=f"content {cid} is present ({size} bytes) but its SM3 digest {_hex(actual)} "
                f"differs from the ledger's {_hex(digest)}",
            )
        return Check(ok=True, detail=f"content {cid} present ({size} bytes), SM3 digest matches the ledger")

    def check_sm9(self, identity: str, message: bytes, signature_der: bytes) -> Check:
        """SM9 verification of ``signature_der`` over ``message`` under ``identity`` (cached)."""

        def compute() -> Check:
            try:
                signature = Signature.from_der(signature_der)
            except (SM9Error, ValueError) as exc:
                return Check(ok=False, detail=f"malformed SM9 signature under identity {identity!r}: {exc}")
            try:
                valid = verify(self.master_public_key, identity, message, signature)
            except (SM9Error, ValueError) as exc:
                return Check(ok=False, detail=f"SM9 signature could not be checked under {identity!r}: {exc}")
            if valid:
                return Check(ok=True, detail=f"SM9 signature valid under identity {identity!r}")
            return Check(ok=False, detail=f"SM9 signature does not verify under identity {identity!r}")

        key = (identity, bytes(message), bytes(signature_der))
        with self._cache_lock:
            cached = self._signature_checks.get(key)
        if cached is None:
            cached = compute()  # outside the lock: a pairing takes milliseconds
            with self._cache_lock:
                self._signature_checks[key] = cached
        return cached

    def _signature_check(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> Check:
        identity = self._sm9_identity_of(snap, event)
        if identity is None:
            return Check(ok=False, detail=f"{event.institution} had no SM9 identity on the ledger when it submitted")
        return self.check_sm9(identity, self._entry(snap, event).message(), event.sm9_signature)

    def _link_check(self, snap: LedgerSnapshot, round: int) -> Check:
        """Round ``round`` starts from round-1's posted global model (round 0: the initial model)."""
        opened = snap.opened[round]
        if round == 0:
            return Check(ok=True, detail=f"round 0 starts from the initial model {opened.base_cid}")
        previous = snap.posted.get(round - 1)
        if previous is None:
            return Check(ok=False, detail=f"round {round - 1} has no posted global model to start from")
        if previous.digest != opened.base_digest:
            return Check(
                ok=False,
                detail=f"base digest {_hex(opened.base_digest)} differs from round {round - 1}'s "
                f"global digest {_hex(previous.digest)}",
            )
        if _cid_key(previous.cid) != _cid_key(opened.base_cid):
            return Check(
                ok=False,
                detail=f"base CID {opened.base_cid} differs from round {round - 1}'s global CID {previous.cid}",
            )
        return Check(ok=True, detail=f"starts from round {round - 1}'s global model {previous.cid}")

    def _base_check(self, snap: LedgerSnapshot, round: int) -> Check:
        link = self._link_check(snap, round)
        if round > 0 or not link.ok:
            return link  # a later round's base content is the previous global's, checked there
        opened = snap.opened[0]
        content = self.check_content(opened.base_cid, opened.base_digest)
        return Check(ok=content.ok, detail=f"initial model: {content.detail}")

    def _approvals_check(self, snap: LedgerSnapshot, post: GlobalModelPosted) -> Check:
        state = snap.membership_at(position(post.meta))
        approvers = [a.lower() for a in post.approvers]
        distinct = set(approvers)
        members = distinct & set(state.active)
        problems = []
        if len(distinct) != len(approvers):
            problems.append("an approver is listed twice")
        outsiders = sorted(distinct - members)
        if outsiders:
            problems.append(f"not active institutions at posting: {', '.join(outsiders)}")
        if len(members) < state.threshold or state.threshold == 0:
            problems.append(f"only {len(members)} member approvals, k = {state.threshold}")
        if problems:
            return Check(ok=False, detail="; ".join(problems))
        return Check(
            ok=True,
            detail=f"{len(members)} distinct member approvals, k = {state.threshold} of {len(state.active)} at posting",
        )

    def update_verdict(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateVerdict:
        content = self.check_content(event.cid, event.digest)
        signature = self._signature_check(snap, event)
        inclusion = self._inclusion(snap, event.round)
        included: Check | None = None
        if inclusion is not None:
            if inclusion.included is None:
                included = Check(ok=False, detail=f"cannot tell: {inclusion.describe()}")
            elif event.institution.lower() in inclusion.included:
                included = Check(ok=True, detail=f"included in round {event.round}'s updates root")
            else:
                included = Check(
                    ok=False, detail=f"left out of round {event.round}'s record: not under its updates root"
                )
        checks = [c for c in (content, signature, included) if c is not None]
        return UpdateVerdict(
            content=content,
            signature=signature,
            included=included,
            verified=all(c.ok for c in checks),
            final=included is not None,
        )

    def global_verdict(self, snap: LedgerSnapshot, round: int) -> GlobalModelResponse:
        opened = self._opened(snap, round)
        post = self._posted(snap, round)
        identity = self.consortium_identity(snap)
        record = RoundRecord(
            snap.chain_id, snap.contract, round, opened.base_digest, post.cid, post.digest, post.updates_root
        )
        inclusion = self._posted_inclusion(snap, round)
        if inclusion.included is None:
            root = Check(ok=False, detail=inclusion.describe())
            entries = Check(ok=False, detail="the included entries cannot be determined")
        else:
            root = Check(ok=True, detail=inclusion.describe())
            included_set = set(inclusion.included)
            bad = [
                f"{e.institution} ({self._signature_check(snap, e).detail})"
                for e in snap.updates.get(round, [])
                if e.institution.lower() in included_set and not self._signature_check(snap, e).ok
            ]
            entries = (
                Check(ok=False, detail="included entries with a bad SM9 signature: " + "; ".join(bad))
                if bad
                else Check(ok=True, detail=f"all {len(included_set)} included entries carry valid SM9 signatures")
            )
        threshold_signature = self.check_sm9(identity, record.message(), post.sm9_threshold_signature)
        verdict_checks = {
            "content": self.check_content(post.cid, post.digest),
            "threshold_signature": threshold_signature,
            "approvals": self._approvals_check(snap, post),
            "updates_root": root,
            "included_entries": entries,
            "base_model": self._base_check(snap, round),
        }
        verdict = GlobalVerdict(**verdict_checks, verified=all(c.ok for c in verdict_checks.values()))
        included_addresses = None
        if inclusion.included is not None:
            by_address = {e.institution.lower(): e.institution for e in snap.updates.get(round, [])}
            included_addresses = [by_address[a] for a in inclusion.included]
        return GlobalModelResponse(
            entry=self._global_entry(post),
            record=RoundRecordModel(
                chain_id=record.chain_id,
                contract=record.contract,
                round=round,
                base_digest=_hex(record.base_digest),
                global_cid=record.global_cid,
                global_digest=_hex(record.global_digest),
                updates_root=_hex(record.updates_root),
                message=_hex(record.message()),
                signed_as=identity,
            ),
            included=included_addresses,
            verdict=verdict,
        )

    # ------------------------------------------------------------------ models

    @staticmethod
    def _global_entry(post: GlobalModelPosted) -> GlobalModelEntry:
        return GlobalModelEntry(
            round=post.round,
            cid=post.cid,
            digest=_hex(post.digest),
            updates_root=_hex(post.updates_root),
            sm9_threshold_signature=_hex(post.sm9_threshold_signature),
            update_count=post.update_count,
            nonce=post.nonce,
            approvers=[to_checksum_address(a) for a in post.approvers],
            posted=_ref(post.meta),
        )

    def _entry_model(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateEntryModel:
        return UpdateEntryModel(
            round=event.round,
            institution=to_checksum_address(event.institution),
            sm9_identity=self._sm9_identity_of(snap, event),
            cid=event.cid,
            digest=_hex(event.digest),
            mapping_digest=_hex(event.mapping_digest),
            num_samples=event.num_samples,
            width_rate_ppm=event.width_rate_ppm,
            width_rate=event.width_rate_ppm / 1_000_000,
            sm9_signature=_hex(event.sm9_signature),
            leaf=_hex(self._entry(snap, event).leaf(event.sm9_signature)),
            submitted=_ref(event.meta),
        )

    def _list_item(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateListItem:
        inclusion = self._inclusion(snap, event.round)
        included = None
        if inclusion is not None and inclusion.included is not None:
            included = event.institution.lower() in inclusion.included
        return UpdateListItem(**self._entry_model(snap, event).model_dump(), included=included)

    def _round_failures(
        self, snap: LedgerSnapshot, round: int
    ) -> tuple[int, int, GlobalModelResponse | None, list[Failure]]:
        """(updates verified, updates failed, global verdict or None, failures) of one round."""
        failures: list[Failure] = []
        verified = failed = 0
        for event in snap.updates.get(round, []):
            verdict = self.update_verdict(snap, event)
            if verdict.verified:
                verified += 1
            else:
                failed += 1
            for name in ("content", "signature", "included"):
                check: Check | None = getattr(verdict, name)
                if check is not None and not check.ok:
                    failures.append(
                        Failure(
                            kind="update",
                            round=round,
                            institution=to_checksum_address(event.institution),
                            cid=event.cid,
                            check=name,
                            detail=check.detail,
                        )
                    )
        global_model = None
        if round in snap.posted:
            global_model = self.global_verdict(snap, round)
            for name, check in global_model.verdict:
                if isinstance(check, Check) and not check.ok:
                    failures.append(
                        Failure(
                            kind="global",
                            round=round,
                            cid=global_model.entry.cid,
                            check=name,
                            detail=check.detail,
                        )
                    )
        else:
            base = self._base_check(snap, round)
            if not base.ok:
                base_cid = snap.opened[round].base_cid
                failures.append(
                    Failure(kind="round", round=round, cid=base_cid, check="base_model", detail=base.detail)
                )
        return verified, failed, global_model, failures

    # ------------------------------------------------------------------ queries

    def health(self) -> Health:
        snap = self.snapshot()
        return Health(status="ok", chain_id=snap.chain_id, contract=snap.contract, block=snap.block)

    def rounds(self, offset: int = 0, limit: int = DEFAULT_LIMIT) -> Page[RoundListItem]:
        check_paging(offset, limit)
        snap = self.snapshot()
        items = []
        for r in snap.rounds[offset : offset + limit]:
            opened, post = snap.opened[r], snap.posted.get(r)
            items.append(
                RoundListItem(
                    round=r,
                    base_cid=opened.base_cid,
                    base_digest=_hex(opened.base_digest),
                    aggregator=to_checksum_address(opened.aggregator),
                    opened=_ref(opened.meta),
                    update_count=len(snap.updates.get(r, [])),
                    posted=post is not None,
                    global_cid=post.cid if post else None,
                    global_digest=_hex(post.digest) if post else None,
                )
            )
        return Page[RoundListItem](total=len(snap.opened), offset=offset, limit=limit, items=items)

    def round(self, round: int) -> RoundDetail:
        snap = self.snapshot()
        opened = self._opened(snap, round)
        verified, failed, global_model, failures = self._round_failures(snap, round)
        post = snap.posted.get(round)
        status: Literal["verified", "failed", "open"]
        if failures:
            status = "failed"
        elif post is None:
            status = "open"
        else:
            status = "verified"
        origin = "initial model" if round == 0 else f"round {round - 1} global model"
        return RoundDetail(
            round=round,
            aggregator=to_checksum_address(opened.aggregator),
            opened=_ref(opened.meta),
            base_model=ModelRef(cid=opened.base_cid, digest=_hex(opened.base_digest), origin=origin),
            global_model=self._global_entry(post) if post else None,
            update_count=len(snap.updates.get(round, [])),
            approvers=[to_checksum_address(a) for a in post.approvers] if post else [],
            included=global_model.included if global_model else None,
            verdict=RoundVerdictSummary(
                status=status,
                updates_verified=verified,
                updates_failed=failed,
                global_verified=global_model.verdict.verified if global_model else None,
                failures=failures,
            ),
        )

    def updates(self, round: int, offset: int = 0, limit: int = DEFAULT_LIMIT) -> Page[UpdateListItem]:
        check_paging(offset, limit)
        snap = self.snapshot()
        self._opened(snap, round)
        events = snap.updates.get(round, [])
        items = [self._list_item(snap, e) for e in events[offset : offset + limit]]
        return Page[UpdateListItem](total=len(events), offset=offset, limit=limit, items=items)

    def update(self, round: int, institution: str) -> UpdateWithVerdict:
        snap = self.snapshot()
        event = self._update_of(snap, round, institution)
        return UpdateWithVerdict(entry=self._entry_model(snap, event), verdict=self.update_verdict(snap, event))

    def update_proof(self, round: int, institution: str) -> InclusionProof:
        snap = self.snapshot()
        event = self._update_of(snap, round, institution)
        post = snap.posted.get(round)
        if post is None:
            raise Conflict(f"round {round} has no posted round record yet, so nothing to prove inclusion in")
        inclusion = self._posted_inclusion(snap, round)
        if inclusion.included is None:
            raise Conflict(f"round {round}: {inclusion.describe()}, so no inclusion proof can be given")
        address = event.institution.lower()
        if address not in inclusion.included:
            raise Conflict(
                f"institution {to_checksum_address(address)}'s round {round} update is not included "
                "in the round record's updates root"
            )
        leaves_by_address = dict(self._leaves(snap, round))
        leaves = [leaves_by_address[a] for a in inclusion.included]
        index = inclusion.included.index(address)
        proof = merkle_proof(leaves, index)
        return InclusionProof(
            round=round,
            institution=to_checksum_address(address),
            leaf=_hex(leaves[index]),
            index=index,
            leaf_count=len(leaves),
            siblings=[_hex(s) for s in proof.siblings],
            sibling_on_left=list(proof.left),
            updates_root=_hex(post.updates_root),
            verified=verify_proof(leaves[index], proof, post.updates_root),
        )

    def global_model(self, round: int) -> GlobalModelResponse:
        return self.global_verdict(self.snapshot(), round)

    def _institution_models(self, snap: LedgerSnapshot) -> list[InstitutionModel]:
        state = snap.membership_at(None)
        first_added: dict[str, EventMeta] = {}
        for event in snap.membership:
            if event.name == "InstitutionAdded":
                first_added.setdefault(str(event.args["institution"]).lower(), event.meta)
        submissions: dict[str, int] = {}
        for events in snap.updates.values():
            for e in events:
                submissions[e.institution.lower()] = submissions.get(e.institution.lower(), 0) + 1
        approvals: dict[str, int] = {}
        for post in snap.posted.values():
            for a in {a.lower() for a in post.approvers}:
                approvals[a] = approvals.get(a, 0) + 1
        accesses: dict[str, int] = {}
        for access in snap.accesses:
            accesses[access.accessor.lower()] = accesses.get(access.accessor.lower(), 0) + 1
        return [
            InstitutionModel(
                address=to_checksum_address(address),
                sm9_id=state.sm9_ids[address],
                active=address in state.active,
                registered_at=_ref(meta),
                submissions=submissions.get(address, 0),
                approvals=approvals.get(address, 0),
                accesses=accesses.get(address, 0),
            )
            for address, meta in first_added.items()
        ]

    def institutions(self, offset: int = 0, limit: int = DEFAULT_LIMIT) -> Page[InstitutionModel]:
        check_paging(offset, limit)
        return paginate(self._institution_models(self.snapshot()), offset, limit)

    def institution_history(self, address: str, offset: int = 0, limit: int = DEFAULT_LIMIT) -> InstitutionHistory:
        check_paging(offset, limit)
        wanted = parse_address(address).lower()
        snap = self.snapshot()
        found = [i for i in self._institution_models(snap) if i.address.lower() == wanted]
        if not found:
            raise NotFound(f"{to_checksum_address(wanted)} has never been an institution on this ledger")
        membership = [
            MembershipEventModel(event=e.name, args=_jsonable(e.args), at=_ref(e.meta))
            for e in snap.membership
            if str(e.args.get("institution", "")).lower() == wanted
        ]
        submissions = [
            self._list_item(snap, e)
            for r in snap.rounds
            for e in snap.updates.get(r, [])
            if e.institution.lower() == wanted
        ]
        approvals = [
            ApprovalModel(round=p.round, global_cid=p.cid, global_digest=_hex(p.digest), posted=_ref(p.meta))
            for r, p in sorted(snap.posted.items())
            if wanted in {a.lower() for a in p.approvers}
        ]
        accesses = [self._access_model(a) for a in snap.accesses if a.accessor.lower() == wanted]
        return InstitutionHistory(
            institution=found[0],
            membership=membership,
            submissions=paginate(submissions, offset, limit),
            approvals=paginate(approvals, offset, limit),
            accesses=paginate(accesses, offset, limit),
        )

    @staticmethod
    def _access_model(access: AccessRecorded) -> AccessRecordModel:
        return AccessRecordModel(
            accessor=to_checksum_address(access.accessor),
            cid=access.cid,
            purpose=access.purpose,
            recorded=_ref(access.meta),
        )

    def access_records(
        self,
        accessor: str | None = None,
        cid: str | None = None,
        offset: int = 0,
        limit: int = DEFAULT_LIMIT,
    ) -> Page[AccessRecordModel]:
        check_paging(offset, limit)
        wanted_accessor = parse_address(accessor, "accessor").lower() if accessor else None
        wanted_cid = _cid_key(str(parse_cid(cid))) if cid else None
        snap = self.snapshot()
        records = [
            self._access_model(a)
            for a in snap.accesses
            if (wanted_accessor is None or a.accessor.lower() == wanted_accessor)
            and (wanted_cid is None or _cid_key(a.cid) == wanted_cid)
        ]
        return paginate(records, offset, limit)

    def lineage(self, cid: str) -> Lineage:
        key = _cid_key(str(parse_cid(cid)))
        snap = self.snapshot()
        if not snap.opened:
            raise NotFound(f"{cid}: no round has been opened on this ledger yet")
        initial = snap.opened[min(snap.opened)]
        initial_ref = ModelRef(cid=initial.base_cid, digest=_hex(initial.base_digest), origin="initial model")
        steps: list[LineageStep] = []
        kind: str
        round: int | None
        posted_rounds = [r for r, p in sorted(snap.posted.items(), reverse=True) if _cid_key(p.cid) == key]
        update = next(
            (e for r in sorted(snap.updates, reverse=True) for e in snap.updates[r] if _cid_key(e.cid) == key),
            None,
        )
        if posted_rounds:
            kind, round = "global", posted_rounds[0]
            next_global = round
        elif update is not None:
            kind, round = "update", update.round
            started = snap.opened[round]
            steps.append(
                LineageStep(
                    round=round,
                    kind="update",
                    model_cid=update.cid,
                    model_digest=_hex(update.digest),
                    base_cid=started.base_cid,
                    base_digest=_hex(started.base_digest),
                    link=self._link_check(snap, round),
                )
            )
            next_global = round - 1
        elif _cid_key(initial.base_cid) == key:
            return Lineage(cid=cid, kind="initial", round=None, steps=[], initial_model=initial_ref, complete=True)
        else:
            raise NotFound(f"{cid} is neither a global model, an update nor the initial model on this ledger")
        complete = True
        for r in range(next_global, -1, -1):
            post, opened = snap.posted.get(r), snap.opened.get(r)
            if post is None or opened is None:
                complete = False
                break
            steps.append(
                LineageStep(
                    round=r,
                    kind="global",
                    model_cid=post.cid,
                    model_digest=_hex(post.digest),
                    base_cid=opened.base_cid,
                    base_digest=_hex(opened.base_digest),
                    link=self._link_check(snap, r),
                )
            )
        complete = complete and all(step.link.ok for step in steps)
        return Lineage(
            cid=cid,
            kind=kind,  # type: ignore[arg-type]
            round=round,
            steps=steps,
            initial_model=initial_ref,
            complete=complete,
        )

    def summary(self) -> AuditSummary:
        """Every entry on the ledger checked now: counts and the list of what failed."""
        snap = self.snapshot()
        failures: list[Failure] = []
        updates_verified = updates_failed = globals_verified = globals_failed = 0
        for r in snap.rounds:
            verified, failed, global_model, round_failures = self._round_failures(snap, r)
            updates_verified += verified
            updates_failed += failed
            if global_model is not None:
                if global_model.verdict.verified:
                    globals_verified += 1
                else:
                    globals_failed += 1
            failures += round_failures
        state = snap.membership_at(None)
        latest = snap.latest_round
        return AuditSummary(
            chain_id=snap.chain_id,
            contract=snap.contract,
            consortium_identity=self.consortium_identity(snap),
            threshold=state.threshold,
            institutions=len(state.active),
            checked_at_block=snap.block,
            rounds=len(snap.opened),
            rounds_posted=len(snap.posted),
            open_round=latest if latest is not None and latest not in snap.posted else None,
            updates=Counts(total=updates_verified + updates_failed, verified=updates_verified, failed=updates_failed),
            global_models=Counts(
                total=globals_verified + globals_failed, verified=globals_verified, failed=globals_failed
            ),
            access_records=len(snap.accesses),
            all_verified=not failures,
            failures=failures,
        )


def _jsonable(args: dict[str, object]) -> dict[str, object]:
    """Event arguments as JSON values (bytes as hex, lists kept)."""

    def convert(value: object) -> object:
        if isinstance(value, bytes | bytearray):
            return _hex(bytes(value))
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return {k: convert(v) for k, v in args.items()}
