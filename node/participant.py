"""The node's side of the round protocol: train and submit, then check and co-sign the record.

Every step first asks the ledger what has already happened, so a node that crashed and restarts
carries on where the chain says it is: it never submits twice and never signs a record it has
not checked. What a node checks before it contributes a partial signature:

- the record names the open round and the base model the round was opened with;
- the round manifest the record binds (CID + SM3) lists every ``UpdateSubmitted`` entry of the round
  exactly once, included or excluded; the included rows are the ledger's entries, their Merkle root
  is the record's ``updates_root``, and its own entry is on the ledger exactly as it submitted it;
- the global model's content is in the store and its SM3 digest is the record's;
- (``verify_aggregation``) the node runs the aggregator's own pipeline
  (``fedledger.protocol.round_check``) on the ledger's entries: every SM9 signature, file field and
  FL rule, weights from the ledger. It signs only if it reaches the same inclusions, the same
  exclusions with the same reason codes and the same global model bytes.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount

from fedledger.chain.approvals import GlobalModelRecord
from fedledger.chain.client import LedgerClient, UpdateSubmitted
from fedledger.digests import sm3
from fedledger.dp.errors import DPError
from fedledger.envelope import RecipientKeys
from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_text
from fedledger.fl import Dataset, ModelFileError, TrainConfig
from fedledger.phases import PhaseTimes
from fedledger.protocol import RoundRecord, UpdateEntry, width_to_ppm
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.manifest import MAX_MANIFEST_BYTES, Decisions, ManifestError, RoundManifest
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.momentum_history import MomentumHistoryError, before_previous_model
from fedledger.protocol.readers import readers_now, sealing_key_if_any
from fedledger.protocol.round_check import AggregationRule, ledger_updates
from fedledger.protocol.secagg_round import SecureRoundError
from fedledger.protocol.session_auth import sign_payload
from fedledger.protocol.signature_cache import VerifiedSignatures
from fedledger.protocol.update_prefetch import PrefetchedFiles, PrefetchedVault, UpdatePrefetcher
from fedledger.sm9 import SignMasterPublicKey, SignPrivateKey, sign
from fedledger.sm9.threshold import Signer, ThresholdPublic
from fedledger.store import ContentStore, StoreError
from node.config import HTTP_TIMEOUT_SECONDS, POLL_INTERVAL_SECONDS
from node.http_client import aggregator_client
from node.local_budget import LocalDPPolicy, LocalPrivacySpend
from node.noise_commitment import NoiseCommitmentError, keep_noise_commitment, open_noise_secret
from node.privacy_gate import privacy_refusal
from node.secagg_check import recompute_secure_round
from node.session_view import frozen_commitments, parse_session_view, threshold_signature
from node.training_step import (
    TrainedUpdate,
    UnusableGlobalModel,
    fetch_verified_model,
    recompute_round,
    train_update,
)
from node.wakeup import NodeWakeup

log = logging.getLogger(__name__)


class RecordRefused(FedLedgerError):
    """The aggregator's round record failed one of the node's checks; the node will not sign it."""


class AggregatorUnavailable(FedLedgerError):
    """The aggregator answered 5xx or 429: nothing was taken, the node sends the same payload again."""


class NodeMisconfigured(FedLedgerError):
    """A configuration no retry can heal (no ledger at the address, not a member): the node stops at once."""


@dataclass
class NodeContext:
    """Everything a running node holds: keys (never printed), clients, and its local data."""

    name: str
    account: LocalAccount
    sm9_key: SignPrivateKey
    sm9_identity: str
    signer: Signer
    threshold_public: ThresholdPublic
    master_public_key: SignMasterPublicKey
    consortium: Consortium
    ledger: LedgerClient
    store: ContentStore
    aggregator_url: str
    width_rate: float
    selection: str
    train_data: Dataset
    train_config: TrainConfig
    state_dir: Path
    verify_aggregation: bool = True
    rule: AggregationRule = field(default_factory=AggregationRule)  # what the consortium agreed to aggregate by
    dp_clip: float = 1.0  # secure rounds with DP: the L2 bound on this node's update, clipped before masking
    local_dp: LocalDPPolicy | None = None  # local DP-SGD: this hospital's own record-level budget
    poll_interval: float = POLL_INTERVAL_SECONDS
    http_timeout_seconds: float = HTTP_TIMEOUT_SECONDS
    reader_keys: RecipientKeys | None = None  # SM9 decryption + ML-KEM keys: opens sealed model files
    aggregator_tls: ssl.SSLContext | None = None  # mutual TLS to the aggregator; None = plain HTTP (--insecure-http)
    refresh_data: Callable[[], Dataset] | None = None  # re-reads and re-checks the data before each round
    phases: PhaseTimes = field(default_factory=lambda: PhaseTimes("node"))  # train and submit, per round
    prefetched: PrefetchedFiles = field(default_factory=PrefetchedFiles)  # the round's updates, opened early
    verified: VerifiedSignatures = field(default_factory=VerifiedSignatures)  # SM9 signatures checked once
    skipped_round: int | None = None  # the last round refused for the local DP budget (said once)

    @property
    def vault(self) -> ModelVault:
        return ModelVault(self.store, sealing_key_if_any(self.consortium), self.reader_keys)

    def __repr__(self) -> str:
        return f"NodeContext(name={self.name!r}, address={self.account.address})"


def entry_of(ledger: LedgerClient, event: UpdateSubmitted) -> UpdateEntry:
    """The signed entry an ``UpdateSubmitted`` event stands for."""
    return UpdateEntry.from_event(ledger.chain_id, ledger.address, event)


def verify_posted_round(ctx: NodeContext, round_index: int) -> None:
    """Check round ``round_index``'s posted global model: its threshold SM9 signature over the record."""
    posted = ctx.ledger.global_models_posted(round=round_index)
    opened = ctx.ledger.rounds_opened(round=round_index)
    if not posted or not opened:
        raise RecordRefused(f"round {round_index} has no posted global model on the ledger")
    event = posted[0]
    record = RoundRecord.from_posted(ctx.ledger.chain_id, ctx.ledger.address, opened[0].base_digest, event)
    # Verified already if this node approved that record: the cache knows the very bytes.
    signature = bytes(event.sm9_threshold_signature)
    if not ctx.verified.verify(ctx.master_public_key, ctx.threshold_public.identity, record.message(), signature):
        raise RecordRefused(f"round {round_index}: the consortium's threshold signature is invalid")


def round_dir(ctx: NodeContext, round_index: int) -> Path:
    return ctx.state_dir / f"round-{round_index}"


def train_for_round(ctx: NodeContext, round_index: int) -> TrainedUpdate:
    """Check the round's base model against the ledger, fetch it, train, and write the update file.

    For r > 0 the base must be round r-1's posted global model and its threshold signature must
    verify. The retrieval is logged on the ledger (``recordAccess``), as EMR practice asks. With
    local DP-SGD the round is counted against the node's own budget first (LocalBudgetExhausted).
    """
    opened = ctx.ledger.rounds_opened(round=round_index)
    if not opened:
        raise RecordRefused(f"round {round_index} is not open on the ledger")
    base = opened[0]
    if round_index > 0:
        posted = ctx.ledger.global_models_posted(round=round_index - 1)
        # The digest (the plaintext's) links the rounds; the CID may be a re-sealing for new readers.
        if not posted or posted[0].digest != base.base_digest:
            raise RecordRefused(f"round {round_index} does not start from round {round_index - 1}'s model")
        verify_posted_round(ctx, round_index - 1)
    if ctx.refresh_data is not None:
        ctx.train_data = ctx.refresh_data()
    local_dp = None
    if ctx.local_dp is not None:
        planned = ctx.local_dp.round_for(len(ctx.train_data), ctx.train_config.batch_size, ctx.train_config.epochs)
        local_dp = LocalPrivacySpend(ctx.state_dir, ctx.local_dp).reserve(round_index, planned)
    folder = round_dir(ctx, round_index)
    # The base is the global model this node checked as round r-1's candidate: opened already.
    vault = PrefetchedVault.over(ctx.vault, ctx.prefetched)
    base_path = fetch_verified_model(vault, base.base_cid, base.base_digest, folder / "base.safetensors")
    config = TrainConfig(
        epochs=ctx.train_config.epochs,
        batch_size=ctx.train_config.batch_size,
        lr=ctx.train_config.lr,
        seed=ctx.train_config.seed + round_index,
    )
    # The access record is mined while the node trains (it is on the ledger before the update is).
    with ThreadPoolExecutor(1, thread_name_prefix=f"{ctx.name}-access") as background:
        access = background.submit(ctx.ledger.record_access, ctx.account, base.base_cid, f"train round {round_index}")
        trained, _spec = train_update(
            base_path,
            base.base_digest,
            ctx.account.address.lower(),  # the file names its submitter (round_check holds it to the entry)
            round_index,
            ctx.width_rate,
            ctx.selection,
            ctx.train_data,
            config,
            folder / "update.safetensors",
            local_dp,
        )
        access.result()
    trained.save_summary(folder / "trained.json", base.base_digest)
    log.info("%s: trained round %d (loss %.4f)", ctx.name, round_index, trained.loss)
    return trained


def submit_trained(ctx: NodeContext, round_index: int, trained: TrainedUpdate) -> str:
    """Seal the update to the active members and the aggregator, store it, sign its entry with the
    SM9 identity key and submit it; returns the ciphertext's CID (the entry's digest is the plaintext's)."""
    cid, digest = ctx.vault.put(trained.path, readers_now(ctx.ledger, ctx.consortium))
    if digest != trained.digest:
        raise RecordRefused(f"update file {trained.path} changed since it was trained: not submitting it")
    return submit_entry(ctx, round_index, trained, cid, digest)


def submit_entry(ctx: NodeContext, round_index: int, trained: TrainedUpdate, cid: str, digest: bytes) -> str:
    """Sign the ledger entry for the stored content ``cid`` (SM3 ``digest``) of ``trained`` and submit it."""
    entry = UpdateEntry(
        chain_id=ctx.ledger.chain_id,
        contract=ctx.ledger.address,
        round=round_index,
        institution=ctx.account.address,
        cid=cid,
        digest=digest,
        num_samples=trained.num_samples,
        width_ppm=width_to_ppm(trained.width_rate),
        mapping_digest=trained.mapping_digest,
    )
    signature = sign(ctx.sm9_key, entry.message()).to_der()
    marker = json.dumps({"cid": cid, "digest": digest.hex()})
    atomic_write_text(round_dir(ctx, round_index) / "submitted.json", marker)
    if trained.local_dp is not None:  # public, on the ledger, before the entry it speaks for
        ctx.ledger.record_access(ctx.account, cid, trained.local_dp.statement())
    ctx.ledger.submit_update(
        ctx.account,
        round_index,
        cid,
        digest,
        trained.mapping_digest,
        trained.num_samples,
        entry.width_ppm,
        signature,
    )
    ctx.prefetched.add(round_index, cid, trained.digest, trained.path)  # its own update: no fetch to check it
    log.info("%s: submitted round %d update %s", ctx.name, round_index, cid)
    return cid


def _record_access_once(ctx: NodeContext, round_index: int, base_cid: str) -> None:
    """A reused update still leaves its access record: after a chain rollback the one made when it was
    trained may be gone, and the ledger must show every retrieval of the model."""
    purpose = f"train round {round_index}"
    done = ctx.ledger.access_records(accessor=ctx.account.address, cid=base_cid)
    if not any(a.purpose == purpose for a in done):
        ctx.ledger.record_access(ctx.account, base_cid, purpose)


def train_and_submit(ctx: NodeContext, round_index: int, http: httpx.Client | None = None) -> bool:
    """Train (or reuse this round's already trained update) and submit; False if already submitted.

    With ``http`` (the aggregator's API) the node first keeps a DP round's noise commitment."""
    if ctx.ledger.has_submitted(round_index, ctx.account.address):  # asked every time: a chain can roll back
        return False
    opened = ctx.ledger.rounds_opened(round=round_index)
    folder = round_dir(ctx, round_index)
    trained = None
    if opened:
        trained = TrainedUpdate.load_summary(
            folder / "trained.json", folder / "update.safetensors", opened[0].base_digest
        )
    if trained is not None:
        _record_access_once(ctx, round_index, opened[0].base_cid)
    with ctx.phases.measure(round_index, "train"):
        trained = trained or train_for_round(ctx, round_index)
    if http is not None:
        keep_noise_commitment(ctx, http, round_index)
    with ctx.phases.measure(round_index, "submit"):
        submit_trained(ctx, round_index, trained)
    ctx.phases.log_round(round_index)
    return True


def _within_local_budget(ctx: NodeContext, round_index: int, train: Callable[[], Any]) -> Any:
    """``train()`` (this round's training step), except that a round its local DP cannot train (over
    the node's budget, an unreadable spend file, a bad delta) is skipped, said once: the node
    still checks and co-signs the round, it only sends no update. False when skipped."""
    try:
        return train()
    except DPError as exc:
        if ctx.skipped_round != round_index:
            log.error("%s: %s", ctx.name, exc)
            ctx.skipped_round = round_index
        return False


def check_record(ctx: NodeContext, view: dict[str, Any]) -> RoundRecord:
    """The node's checks before it signs (see the module docstring); returns the record."""
    try:
        record = RoundRecord.from_dict(view.get("record"))
    except ValueError as exc:
        raise RecordRefused(str(exc)) from None
    round_index = record.round
    if record.chain_id != ctx.ledger.chain_id or record.contract.lower() != ctx.ledger.address.lower():
        raise RecordRefused("the record names another ledger")
    state = ctx.ledger.round_state()
    if not state.open or state.round != round_index:
        raise RecordRefused(f"round {round_index} is not the open round on the ledger")
    opened = ctx.ledger.rounds_opened(round=round_index)
    if not opened or opened[0].base_digest != record.base_digest:
        raise RecordRefused(f"round {round_index}: the record's base model is not the one the round opened with")
    events = ctx.ledger.updates_submitted(round=round_index)
    manifest = _checked_manifest(ctx, record, events)
    mine = ctx.account.address.lower()
    by_address = {e.institution.lower(): e for e in events}
    if mine in by_address:
        submitted = ctx.state_dir / f"round-{round_index}" / "submitted.json"
        if submitted.exists():
            local = json.loads(submitted.read_text(encoding="utf-8"))
            if local["cid"] != by_address[mine].cid or local["digest"] != by_address[mine].digest.hex():
                raise RecordRefused("the ledger's entry for this node differs from what it submitted")
        if not ctx.verify_aggregation and mine not in {row.institution for row in manifest.included}:
            raise RecordRefused(f"this node's round {round_index} update was left out of the record")
    global_path = ctx.state_dir / f"round-{round_index}" / "global-candidate.safetensors"
    global_path.unlink(missing_ok=True)  # fetch it anew: the record's CID itself must be available
    try:
        fetch_verified_model(ctx.vault, record.global_cid, record.global_digest, global_path)
    except UnusableGlobalModel as exc:
        raise RecordRefused(f"the global model cannot be checked against the record: {exc}") from None
    ctx.prefetched.add(round_index + 1, record.global_cid, record.global_digest, global_path)  # next round's base
    if ctx.verify_aggregation:
        _check_alignment(ctx, record, opened[0].base_cid, manifest, events)
    return record


def _checked_manifest(ctx: NodeContext, record: RoundRecord, events: list[UpdateSubmitted]) -> RoundManifest:
    """The record's manifest, fetched by CID and held to the record and to the ledger: every entry of
    the round exactly once, each included row exactly the ledger's entry."""
    try:
        data = ctx.store.read_bytes(record.manifest_cid, max_size=MAX_MANIFEST_BYTES)
    except (StoreError, ValueError) as exc:
        raise RecordRefused(f"the round manifest {record.manifest_cid!r} cannot be read: {exc}") from None
    if sm3(data) != record.manifest_digest:
        raise RecordRefused("the round manifest's content does not match the record's manifest digest")
    try:
        manifest = RoundManifest.from_bytes(data)
    except ManifestError as exc:
        raise RecordRefused(f"malformed round manifest: {exc}") from None
    expected = (record.chain_id, record.contract.lower(), record.round, record.base_digest)
    if (manifest.chain_id, manifest.contract, manifest.round, manifest.base_digest) != expected:
        raise RecordRefused("the round manifest names another ledger, round or base model than the record")
    if (manifest.global_cid, manifest.global_digest) != (record.global_cid, record.global_digest):
        raise RecordRefused("the round manifest names another global model than the record")
    try:
        rule = AggregationRule.from_dict(manifest.rule)
    except ManifestError as exc:
        raise RecordRefused(f"the round manifest's rule cannot be recomputed: {exc}") from None
    if rule.consortium_terms() != ctx.rule:  # DP parameters are held to the ledger's budget, next
        raise RecordRefused(f"the round manifest's rule {manifest.rule} is not the consortium's {ctx.rule.to_dict()}")
    refusal = privacy_refusal(ctx.ledger, ctx.store, record.round, rule.privacy)
    if refusal is not None:
        raise RecordRefused(refusal)
    if manifest.updates_root() != record.updates_root:
        raise RecordRefused("the updates root does not match the manifest's included entries")
    if manifest.entry_count != record.entry_count or record.entry_count != len(events):
        raise RecordRefused(
            f"the record accounts for {record.entry_count} entries, its manifest for {manifest.entry_count}, "
            f"the ledger has {len(events)}"
        )
    by_address = {e.institution.lower(): e for e in events}
    rows = [(r.institution, r.cid) for r in manifest.included] + [(r.institution, r.cid) for r in manifest.excluded]
    if {a for a, _ in rows} != set(by_address) or any(by_address[a].cid != cid for a, cid in rows):
        raise RecordRefused("the round manifest does not list exactly the round's ledger entries")
    for row in manifest.included:
        event = by_address[row.institution]
        if (row.digest, row.leaf) != (event.digest, entry_of(ctx.ledger, event).leaf(event.sm9_signature)):
            raise RecordRefused(f"the manifest's row for {row.institution} is not its ledger entry")
    return manifest


def _check_alignment(
    ctx: NodeContext, record: RoundRecord, base_cid: str, manifest: RoundManifest, events: list[UpdateSubmitted]
) -> None:
    """Recompute the round with the shared pipeline: same entries in, same decisions (included, and
    excluded with the same codes) and the same global model out, or the node refuses."""
    folder = round_dir(ctx, record.round)
    roster = ctx.ledger.roster_view()  # identities and readers from one read
    updates = ledger_updates(ctx.ledger.chain_id, ctx.ledger.address, events, roster.identities())
    rule = AggregationRule.from_dict(manifest.rule)  # the consortium's terms, DP within the budget (checked above)
    try:
        secret = open_noise_secret(ctx.vault, ctx.state_dir, record.round, rule.noise) if rule.noise else None
    except NoiseCommitmentError as exc:
        raise RecordRefused(str(exc)) from None
    try:
        base_path = fetch_verified_model(ctx.vault, base_cid, record.base_digest, folder / "base.safetensors")
        if rule.secagg is not None:
            computation, global_digest = recompute_secure_round(ctx, record.round, base_path, updates, manifest)
        else:
            computation, global_digest = recompute_round(
                PrefetchedVault.over(ctx.vault, ctx.prefetched),
                ctx.master_public_key,
                record.round,
                base_path,
                record.base_digest,
                updates,
                rule,
                folder / "recompute",
                ctx.vault.round_readers(base_cid, readers_now(roster, ctx.consortium)),
                noise_secret=secret,
                verified=ctx.verified,
                before_previous=before_previous_model(ctx.ledger, ctx.vault, record.round, folder, rule),
            )
    except (
        ManifestError,
        ModelFileError,
        UnusableGlobalModel,
        SecureRoundError,
        MomentumHistoryError,
        ValueError,
    ) as exc:
        raise RecordRefused(f"the round cannot be recomputed: {exc}") from None
    ledger = (record.chain_id, record.contract)
    own = computation.manifest(ledger, record.round, record.base_digest, record.global_cid, global_digest, rule)
    if own.decisions() != manifest.decisions():
        raise RecordRefused(_disagreement(own.decisions(), manifest.decisions()))
    if own.rule != manifest.rule:
        raise RecordRefused(f"the manifest's rule {manifest.rule} is not what the round ran by: {own.rule}")
    if own.secagg != manifest.secagg:
        raise RecordRefused("the manifest's secure-aggregation record (survivors, messages or named liars) is wrong")
    if global_digest != record.global_digest:
        raise RecordRefused("the global model is not the aggregation of the included updates")


def _disagreement(mine: Decisions, theirs: Decisions) -> str:
    """One line naming the first entry on which this node's recomputation and the manifest differ."""

    def table(d: Decisions) -> dict[str, str]:
        return {row[0]: "included" for row in d[0]} | {row[0]: f"excluded ({row[2]})" for row in d[1]}

    own, claimed = table(mine), table(theirs)
    for address in sorted(set(own) | set(claimed)):
        if own.get(address) != claimed.get(address):
            return (
                f"the manifest says {address} is {claimed.get(address, 'absent')}, "
                f"this node finds it {own.get(address, 'absent')}"
            )
    return "the manifest's rows differ from this node's recomputation"


def aggregator_view(http: httpx.Client, url: str) -> httpx.Response | None:
    """GET one of the aggregator's views: None when it has none yet (404); AggregatorUnavailable on 5xx/429."""
    response = http.get(url)
    if response.status_code == 404:
        return None
    if response.status_code >= 500 or response.status_code == 429:
        raise AggregatorUnavailable(f"aggregator answered {response.status_code} for {url}")
    response.raise_for_status()
    return response


class SessionParticipant:
    """Follows the aggregator's signing session for the open round, one poll at a time.

    Commit and sign are idempotent per session: the commitment and the partial made for a session
    are kept and sent again (never made again) until the aggregator answers, so a lost response
    costs a resend, not the session.
    """

    def __init__(self, ctx: NodeContext, http: httpx.Client) -> None:
        self.ctx = ctx
        self.http = http
        self._checked: dict[str, RoundRecord] = {}
        self._refused: dict[str, str] = {}  # session id -> why this node will not sign it
        self._done: set[tuple[str, str]] = set()  # (session id, phase) this node has acted on
        self._made: dict[tuple[str, str], dict[str, Any]] = {}  # (session id, phase) -> payload to resend

    def _post(self, path: str, body: dict[str, Any]) -> None:
        response = self.http.post(f"{self.ctx.aggregator_url}{path}", json=body)
        if response.status_code >= 500 or response.status_code == 429:
            raise AggregatorUnavailable(f"aggregator answered {response.status_code} to {path}; sending again")
        if response.status_code >= 400:
            log.warning("%s: aggregator refused %s: %s", self.ctx.name, path, response.text[:300])

    def _check(self, session_id: str, view: dict[str, Any]) -> RoundRecord:
        try:
            return check_record(self.ctx, view)
        except RecordRefused as exc:
            self._refused[session_id] = str(exc)
            raise

    def _post_signed(self, path: str, payload: dict[str, Any]) -> None:
        """Post a session payload with this node's Ethereum signature over it (the aggregator checks it)."""
        self._post(path, {"payload": payload, "auth": sign_payload(self.ctx.account.key, payload)})

    def _made_once(self, sid: str, phase: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The payload this node made for (session, phase), made on first use only (nonces are single-use)."""
        if (sid, phase) not in self._made:
            self._made[(sid, phase)] = make()
        return self._made[(sid, phase)]

    def step(self, round_index: int) -> str:
        """Act on the session's current phase once; returns the phase seen ('none' if no session)."""
        response = aggregator_view(self.http, f"{self.ctx.aggregator_url}/rounds/{round_index}/session")
        if response is None:
            return "none"
        view, sid, phase = parse_session_view(response)
        step_key = (sid, "approve" if phase == "ready" else phase)  # one approval per session
        if step_key in self._done:
            return phase
        if sid in self._refused:  # checked once and refused: do not redo the checks at every poll
            raise RecordRefused(self._refused[sid])
        index = self.ctx.signer.index
        base = f"/rounds/{round_index}/sessions/{sid}"
        if phase == "commit":
            if index in view.get("excluded", []):
                self._done.add(step_key)
                return phase
            if sid not in self._checked:
                self._checked[sid] = self._check(sid, view)
            payload = self._made_once(sid, phase, lambda: self.ctx.signer.commit(sid).to_dict())
            self._post_signed(f"{base}/commitments", payload)
            log.info("%s: round %d record checked; committed to signing session %s", self.ctx.name, round_index, sid)
        elif phase == "sign":
            commitments = frozen_commitments(view)
            record = self._checked.get(sid)
            if record is not None and any(c.index == index for c in commitments):
                message = record.message()
                payload = self._made_once(sid, phase, lambda: self.ctx.signer.sign(sid, message, commitments).to_dict())
                self._post_signed(f"{base}/partials", payload)
                log.info("%s: round %d partial signature sent", self.ctx.name, round_index)
        elif phase in ("approve", "ready"):
            signature_der, _ = threshold_signature(view)
            record = self._checked.get(sid) or self._check(sid, view)
            self._checked[sid] = record
            if not self.ctx.verified.verify(
                self.ctx.master_public_key,
                self.ctx.threshold_public.identity,
                record.message(),
                signature_der,
            ):
                raise RecordRefused("the aggregated threshold signature does not verify")
            approval = self.ctx.ledger.approve_global_model(
                self.ctx.account,
                GlobalModelRecord.from_round_record(record, signature_der),
            )
            self._post(f"{base}/approvals", {"approval": "0x" + approval.hex()})
            log.info("%s: round %d threshold signature verified; approval sent", self.ctx.name, round_index)
        self._done.add(step_key)
        return phase


def check_membership(ctx: NodeContext) -> None:
    """NodeMisconfigured unless the configured address holds a ledger, the roster is for it, and this
    node's account is an active institution there: no amount of retrying heals any of these."""
    ledger = ctx.ledger
    if not ledger.w3.eth.get_code(ledger.address):
        raise NodeMisconfigured(f"no contract at {ledger.address} on chain {ledger.chain_id}: wrong contract address?")
    if ctx.consortium.contract.lower() != ledger.address.lower() or ctx.consortium.chain_id != ledger.chain_id:
        raise NodeMisconfigured(
            f"the consortium roster is for contract {ctx.consortium.contract} on chain {ctx.consortium.chain_id}, "
            f"the config names {ledger.address} on chain {ledger.chain_id}"
        )
    if not ledger.institution(ctx.account.address).active:
        raise NodeMisconfigured(f"{ctx.account.address} is not an active institution of ledger {ledger.address}")


def run_node(
    ctx: NodeContext, rounds: int | None, poll_interval: float | None = None, stop: threading.Event | None = None
) -> int:
    """Follow rounds until round ``rounds - 1`` is posted (forever when ``rounds`` is None) or ``stop``.

    ``poll_interval`` overrides the context's (the config's) for this run. Whatever one poll raises
    (a malformed session view, a refused record, the aggregator, chain or store out of reach) is
    logged once with its reason and the next poll tries again; only ``stop`` or NodeMisconfigured
    (checked first) ends the loop.
    """
    stop = stop or threading.Event()
    poll_interval = ctx.poll_interval if poll_interval is None else poll_interval
    ctx.phases.who = ctx.name
    prefetcher = UpdatePrefetcher(
        ctx.ledger,
        lambda: ctx.vault,
        lambda r: round_dir(ctx, r) / "prefetch",
        ctx.prefetched,
        (ctx.master_public_key, ctx.verified),
    )
    with (
        aggregator_client(ctx.aggregator_tls, ctx.http_timeout_seconds) as http,
        NodeWakeup(ctx, stop) as wakeup,
        prefetcher,
    ):
        if wakeup.ledger_events is not None:
            wakeup.ledger_events.on_log(prefetcher.on_log)
        participant = SessionParticipant(ctx, http)
        from node.secagg_client import SecureClient  # it builds on this module's steps

        secure = SecureClient(ctx, http) if ctx.rule.secagg is not None else None
        last_problem = ""
        checked = False
        seen_round = 0
        while not stop.is_set():
            problem = ""
            try:
                if not checked:
                    check_membership(ctx)
                    checked = True
                state = ctx.ledger.round_state()
                seen_round = state.round
                if rounds is not None and state.started and not state.open and state.round >= rounds - 1:
                    return state.round + 1
                r = state.round
                if state.open and secure is not None:
                    # trains, then the secure phases; signing follows as usual
                    _within_local_budget(ctx, r, partial(secure.step, r))
                    participant.step(r)
                elif state.open and not _within_local_budget(ctx, r, partial(train_and_submit, ctx, r, http)):
                    participant.step(r)
            except NodeMisconfigured:
                raise
            except RecordRefused as exc:
                problem = f"{ctx.name}: {exc}"
            except httpx.HTTPError as exc:
                problem = f"{ctx.name}: aggregator unreachable ({type(exc).__name__}: {exc}); retrying"
            except (FedLedgerError, ConnectionError) as exc:  # transient: try again next poll
                problem = f"{ctx.name}: {exc}; retrying"
            except Exception as exc:  # one bad poll never ends the node
                problem = f"{ctx.name}: {type(exc).__name__}: {exc}; retrying"
            if problem and problem != last_problem:  # say it once, not at every poll
                log.error("%s", problem)
            last_problem = problem
            wakeup.wait(poll_interval)  # a ledger event or a session change ends it early
        return seen_round
