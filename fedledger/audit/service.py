"""The auditor: one method per question, each a snapshot of the ledger, a lookup, checks and a view.

Kept apart from HTTP (``fedledger.audit.api`` is a thin layer over it) so the same verdicts serve
the REST API, ``fedledger audit summary`` and tests. The work is split by responsibility:
``params`` (what input is valid), ``index`` (the chain's events, failing closed on a missing ledger,
a wrong chain or a rollback), ``lookup`` (finding a round or entry), ``verdicts`` and ``content``
(the checks, cached), ``views`` (events as typed answers). What is cached:

- chain events are immutable, so they are indexed once (``LedgerIndex``) and extended as blocks come;
  a rollback discards the index and what was derived from it;
- SM9 verification depends only on event data; a round's manifest (what it includes and excludes)
  is read once per posted round;
- content verdicts are kept per CID (bounded; ``recheck_content_after`` seconds, default forever),
  so ``/summary`` does not re-stream every file on every call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from eth_utils import to_checksum_address

from fedledger.audit.content import DEFAULT_CACHE_ENTRIES, ContentChecker
from fedledger.audit.errors import Conflict, NotFound
from fedledger.audit.index import DeploymentFacts, LedgerIndex, LedgerSnapshot
from fedledger.audit.local_privacy import LocalPrivacyModel, local_privacy
from fedledger.audit.lookup import opened_round, round_leaves, update_of
from fedledger.audit.models import (
    AccessRecordModel,
    ApprovalModel,
    AuditSummary,
    Check,
    Counts,
    Failure,
    GlobalModelResponse,
    Health,
    InclusionProof,
    InstitutionHistory,
    InstitutionModel,
    Lineage,
    LineageStep,
    MembershipEventModel,
    ModelRef,
    Page,
    PrivacyAccountModel,
    RoundDetail,
    RoundListItem,
    RoundVerdictSummary,
    UpdateListItem,
    UpdateWithVerdict,
)
from fedledger.audit.params import (
    DEFAULT_LIMIT,
    check_paging,
    cid_key,
    paginate,
    parse_address,
    parse_cid_key,
)
from fedledger.audit.privacy import privacy_account, round_privacy_records
from fedledger.audit.verdicts import Verifier
from fedledger.audit.views import (
    access_model,
    event_ref,
    global_entry,
    hex0x,
    institution_models,
    jsonable,
    round_list_item,
    update_entry_model,
    update_list_item,
)
from fedledger.envelope import RecipientKeys
from fedledger.protocol import merkle_proof, verify_proof
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import ContentStore

if TYPE_CHECKING:
    from web3 import Web3

    from fedledger.chain.client import LedgerClient, UpdateSubmitted
    from fedledger.chain.deploy import Deployment


class AuditService:
    """Read-only audit of one ledger, its content store and its SM9 signatures.

    ``consortium_identity`` is the SM9 identity round records are threshold-signed under; by
    default ``consortium:<chain id>:<contract>`` (see ``fedledger.protocol.consortium``).
    ``expected`` is what the audit was configured with (a deployment file gives the chain id, the
    deployment block and transaction); a chain that disagrees is an error, never an empty "verified".
    """

    def __init__(
        self,
        ledger: LedgerClient,
        store: ContentStore,
        master_public_key: SignMasterPublicKey,
        *,
        consortium_identity: str | None = None,
        confirmations: int = 0,
        expected: DeploymentFacts | None = None,
        content_cache_entries: int = DEFAULT_CACHE_ENTRIES,
        recheck_content_after: float | None = None,
        reader_keys: RecipientKeys | None = None,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.master_public_key = master_public_key
        self.content = ContentChecker(
            store, max_entries=content_cache_entries, recheck_after=recheck_content_after, reader_keys=reader_keys
        )
        self.verifier = Verifier(self.content, master_public_key, consortium_identity=consortium_identity)
        self.index = LedgerIndex(
            ledger, confirmations=confirmations, expected=expected, on_rollback=self.verifier.clear
        )

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
            expected=DeploymentFacts(deployment.chain_id, deployment.deploy_block, deployment.tx_hash),
        )

    def __repr__(self) -> str:
        return f"AuditService({self.ledger.address}, store={self.store.location})"

    def snapshot(self) -> LedgerSnapshot:
        """The ledger as indexed now (raises an AuditError when it cannot be read or trusted)."""
        return self.index.snapshot()

    def consortium_identity(self, snap: LedgerSnapshot | None = None) -> str:
        return self.verifier.consortium_identity(snap or self.snapshot())

    def check_content(self, cid: str, digest: bytes) -> Check:
        """The content verdict of ``cid`` against ``digest`` (cached per CID)."""
        return self.content.check(cid, digest)

    def check_sm9(self, identity: str, message: bytes, signature_der: bytes) -> Check:
        return self.verifier.check_sm9(identity, message, signature_der)

    def _list_item(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateListItem:
        return update_list_item(snap, event, self.verifier.is_included(snap, event))

    # ------------------------------------------------------------------ queries

    def health(self) -> Health:
        snap = self.snapshot()
        return Health(status="ok", chain_id=snap.chain_id, contract=snap.contract, block=snap.block)

    def rounds(self, offset: int = 0, limit: int = DEFAULT_LIMIT) -> Page[RoundListItem]:
        check_paging(offset, limit)
        snap = self.snapshot()
        items = [round_list_item(snap, r) for r in snap.rounds[offset : offset + limit]]
        return Page[RoundListItem](total=len(snap.opened), offset=offset, limit=limit, items=items)

    def round(self, round: int) -> RoundDetail:
        snap = self.snapshot()
        opened = opened_round(snap, round)
        verified, failed, global_model, failures = self.verifier.round_failures(snap, round)
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
            opened=event_ref(opened.meta),
            base_model=ModelRef(cid=opened.base_cid, digest=hex0x(opened.base_digest), origin=origin),
            global_model=global_entry(post) if post else None,
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
        opened_round(snap, round)
        events = snap.updates.get(round, [])
        items = [self._list_item(snap, e) for e in events[offset : offset + limit]]
        return Page[UpdateListItem](total=len(events), offset=offset, limit=limit, items=items)

    def update(self, round: int, institution: str) -> UpdateWithVerdict:
        snap = self.snapshot()
        event = update_of(snap, round, institution)
        return UpdateWithVerdict(
            entry=update_entry_model(snap, event), verdict=self.verifier.update_verdict(snap, event)
        )

    def update_proof(self, round: int, institution: str) -> InclusionProof:
        snap = self.snapshot()
        event = update_of(snap, round, institution)
        post = snap.posted.get(round)
        if post is None:
            raise Conflict(f"round {round} has no posted round record yet, so nothing to prove inclusion in")
        inclusion = self.verifier.posted_inclusion(snap, round)
        if inclusion.included is None:
            raise Conflict(f"round {round}: {inclusion.describe()}, so no inclusion proof can be given")
        address = event.institution.lower()
        if address not in inclusion.included:
            raise Conflict(
                f"institution {to_checksum_address(address)}'s round {round} update is not included "
                "in the round record's updates root"
            )
        leaves_by_address = {address: leaf for address, _, _, leaf in round_leaves(snap, round)}
        leaves = [leaves_by_address[a] for a in inclusion.included]
        index = inclusion.included.index(address)
        proof = merkle_proof(leaves, index)
        return InclusionProof(
            round=round,
            institution=to_checksum_address(address),
            leaf=hex0x(leaves[index]),
            index=index,
            leaf_count=len(leaves),
            siblings=[hex0x(s) for s in proof.siblings],
            sibling_on_left=list(proof.left),
            updates_root=hex0x(post.updates_root),
            verified=verify_proof(leaves[index], proof, post.updates_root),
        )

    def global_model(self, round: int) -> GlobalModelResponse:
        return self.verifier.global_verdict(self.snapshot(), round)

    def institutions(self, offset: int = 0, limit: int = DEFAULT_LIMIT) -> Page[InstitutionModel]:
        check_paging(offset, limit)
        return paginate(institution_models(self.snapshot()), offset, limit)

    def institution_history(self, address: str, offset: int = 0, limit: int = DEFAULT_LIMIT) -> InstitutionHistory:
        check_paging(offset, limit)
        wanted = parse_address(address).lower()
        snap = self.snapshot()
        found = [i for i in institution_models(snap) if i.address.lower() == wanted]
        if not found:
            raise NotFound(f"{to_checksum_address(wanted)} has never been an institution on this ledger")
        membership = [
            MembershipEventModel(event=e.name, args=jsonable(e.args), at=event_ref(e.meta))
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
            ApprovalModel(round=p.round, global_cid=p.cid, global_digest=hex0x(p.digest), posted=event_ref(p.meta))
            for r, p in sorted(snap.posted.items())
            if wanted in {a.lower() for a in p.approvers}
        ]
        accesses = [access_model(a) for a in snap.accesses if a.accessor.lower() == wanted]
        return InstitutionHistory(
            institution=found[0],
            membership=membership,
            submissions=paginate(submissions, offset, limit),
            approvals=paginate(approvals, offset, limit),
            accesses=paginate(accesses, offset, limit),
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
        wanted_cid = parse_cid_key(cid) if cid else None
        snap = self.snapshot()
        records = [
            access_model(a)
            for a in snap.accesses
            if (wanted_accessor is None or a.accessor.lower() == wanted_accessor)
            and (wanted_cid is None or cid_key(a.cid) == wanted_cid)
        ]
        return paginate(records, offset, limit)

    def lineage(self, cid: str) -> Lineage:
        key = parse_cid_key(cid)
        snap = self.snapshot()
        if not snap.opened:
            raise NotFound(f"{cid}: no round has been opened on this ledger yet")
        initial = snap.opened[min(snap.opened)]
        initial_ref = ModelRef(cid=initial.base_cid, digest=hex0x(initial.base_digest), origin="initial model")
        steps: list[LineageStep] = []
        kind: Literal["global", "update"]
        posted_rounds = [r for r, p in sorted(snap.posted.items(), reverse=True) if cid_key(p.cid) == key]
        update = next(
            (e for r in sorted(snap.updates, reverse=True) for e in snap.updates[r] if cid_key(e.cid) == key),
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
                    model_digest=hex0x(update.digest),
                    base_cid=started.base_cid,
                    base_digest=hex0x(started.base_digest),
                    link=self.verifier.link_check(snap, round),
                )
            )
            next_global = round - 1
        elif cid_key(initial.base_cid) == key:
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
                    model_digest=hex0x(post.digest),
                    base_cid=opened.base_cid,
                    base_digest=hex0x(opened.base_digest),
                    link=self.verifier.link_check(snap, r),
                )
            )
        complete = complete and all(step.link.ok for step in steps)
        return Lineage(cid=cid, kind=kind, round=round, steps=steps, initial_model=initial_ref, complete=complete)

    def privacy(self) -> PrivacyAccountModel:
        """Epsilon per posted round and cumulatively, next to the on-chain privacy budget."""
        snap = self.snapshot()
        return privacy_account(snap, round_privacy_records(snap, self.store))

    def local_privacy(self) -> LocalPrivacyModel:
        """Each member's record-level epsilon from local DP-SGD, per round and cumulatively."""
        return local_privacy(self.snapshot())

    def summary(self) -> AuditSummary:
        """Every entry on the ledger checked now: counts and the list of what failed."""
        snap = self.snapshot()
        failures: list[Failure] = []
        updates_verified = updates_failed = globals_verified = globals_failed = 0
        for r in snap.rounds:
            verified, failed, global_model, round_failures = self.verifier.round_failures(snap, r)
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
        status: Literal["verified", "failed", "nothing_to_verify"]
        status = "failed" if failures else "verified" if snap.opened else "nothing_to_verify"
        return AuditSummary(
            chain_id=snap.chain_id,
            contract=snap.contract,
            consortium_identity=self.verifier.consortium_identity(snap),
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
            status=status,
            all_verified=status == "verified",
            failures=failures,
        )
