"""The aggregator's round driver: open, collect, align, authorize, post — resumable from the ledger.

Each pass asks the ledger where the protocol is and does the next step, so after a crash the
aggregator picks up where the chain says it is. Aggregation is deterministic (same updates, same
global model bytes, same CID), so redoing an interrupted round yields the same record.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from eth_account.signers.local import LocalAccount

from aggregator.approval_check import ChainApprovals
from aggregator.config import PARTIAL_TIMEOUT_SECONDS, SIGNING_GRACE_SECONDS
from aggregator.http_api import SessionBoard
from aggregator.noise_secret import publish_secret, round_commitment
from aggregator.privacy_gate import check_can_open, planned_privacy
from aggregator.session_clock import SessionClock
from aggregator.signing import SigningSession
from fedledger.chain.approvals import GlobalModelRecord
from fedledger.chain.client import LedgerClient, RosterEntry, RoundOpened, UpdateSubmitted
from fedledger.chain.errors import (
    ApproverNotActive,
    EntryCountMismatch,
    InvalidApprovalSignature,
    NotEnoughApprovals,
)
from fedledger.chain.events import LedgerEventSource
from fedledger.dp.accountant import RoundPrivacy
from fedledger.envelope import Recipient, RecipientKeys
from fedledger.errors import FedLedgerError
from fedledger.fl import ModelSpec, ValidationPolicy, initial_global_state, load_global, save_global
from fedledger.fl.rules import DEFAULT_RULE, DEFAULT_SELECTION, DEFAULT_SERVER_MOMENTUM
from fedledger.phases import PhaseTimes
from fedledger.protocol import RoundRecord
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.manifest import RoundManifest
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.momentum_history import before_previous_model
from fedledger.protocol.readers import readers_now, sealing_key_if_any
from fedledger.protocol.round_check import AggregationRule, RoundComputation, compute_round, ledger_updates
from fedledger.protocol.signature_cache import VerifiedSignatures
from fedledger.protocol.update_prefetch import PrefetchedFiles, PrefetchedVault, UpdatePrefetcher
from fedledger.sm9 import SignMasterPublicKey
from fedledger.sm9.threshold import ThresholdPublic
from fedledger.store import ContentStore

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0  # safety net between pushed ledger events (deadline, stop)


class RoundFailed(FedLedgerError):
    """A round cannot complete (e.g. fewer than k honest signers remain); the message says why."""


class AggregatorMisconfigured(FedLedgerError):
    """A configuration no retry can heal (no ledger at the address, not its aggregator): stop at once."""


class EntriesChanged(FedLedgerError):
    """An update landed after the manifest was built: the round's manifest must be redone."""


MAX_RETRY_DELAY_SECONDS = 10.0


@dataclass
class AggregatorContext:
    account: LocalAccount
    ledger: LedgerClient
    store: ContentStore
    spec: ModelSpec
    master_public_key: SignMasterPublicKey
    threshold_public: ThresholdPublic
    consortium: Consortium
    state_dir: Path
    board: SessionBoard
    init_seed: int = 0
    min_updates: int = 0
    round_deadline_seconds: float = 300.0
    session_timeout_seconds: float = 120.0
    signing_grace_seconds: float = SIGNING_GRACE_SECONDS
    partial_timeout_seconds: float = PARTIAL_TIMEOUT_SECONDS
    policy: ValidationPolicy | None = None
    aggregation_rule: str = DEFAULT_RULE
    selection: str = DEFAULT_SELECTION  # the units each width trains; every update's index map is held to it
    server_momentum: float = DEFAULT_SERVER_MOMENTUM  # beta of the momentum step on each round's result, 0: off
    poll_interval: float = 0.25
    reader_keys: RecipientKeys | None = None  # the aggregator's SM9 decryption + ML-KEM keys
    use_websocket: bool = True  # ledger events pushed over the RPC port's WebSocket; False: polled
    secure_aggregation: bool = False  # rounds run the secure-aggregation phases (aggregator/secagg_phases.py)
    secagg_phase_seconds: float = 60.0  # how long a secure phase waits for the members still missing
    events: LedgerEventSource | None = None  # started on first use, closed by run_aggregator
    prefetched: PrefetchedFiles = field(default_factory=PrefetchedFiles)  # updates opened as they land
    prefetcher: UpdatePrefetcher | None = None  # fed by ``events``; started and closed with it
    verified: VerifiedSignatures = field(default_factory=VerifiedSignatures)  # entries' SM9 signatures, checked once
    phases: PhaseTimes = field(default_factory=lambda: PhaseTimes("aggregator"))
    dp_epsilon: float | None = None  # central DP: the run's target epsilon (None: no DP)
    dp_delta: float = 1e-5
    dp_clip: float = 1.0
    privacy: RoundPrivacy | None = None  # each round's DP parameters, from the target (run_aggregator)

    @property
    def vault(self) -> ModelVault:
        return ModelVault(self.store, sealing_key_if_any(self.consortium), self.reader_keys)

    def readers(self) -> list[Recipient]:
        """Who may read a model file written now: the ledger's active members and the aggregator."""
        return readers_now(self.ledger, self.consortium)

    def __repr__(self) -> str:
        return f"AggregatorContext(address={self.account.address})"


def open_first_round(ctx: AggregatorContext) -> None:
    """Round 0 starts from the seeded initial model, whose CID and digest go on the ledger."""
    path = ctx.state_dir / "global-initial.safetensors"
    save_global(path, initial_global_state(ctx.spec, ctx.init_seed), ctx.spec, 0)
    cid, digest = ctx.vault.put(path, ctx.readers())
    check_can_open(ctx.ledger, ctx.store, 0, ctx.privacy)
    with ctx.phases.measure(0, "open"):
        ctx.ledger.open_round(ctx.account, 0, cid, digest)
    publish_noise_commitment(ctx, 0)
    log.info("opened round 0 from the initial model %s", cid)


def publish_noise_commitment(ctx: AggregatorContext, round_index: int) -> None:
    """A central-DP round's commitment to its noise secret, shown to the nodes before they submit (secure
    rounds have none: their noise is the members' shares)."""
    if ctx.privacy is not None and not ctx.secure_aggregation:
        commitment = round_commitment(ctx.state_dir, ctx.ledger.chain_id, ctx.ledger.address, round_index)
        ctx.board.noise_commitments[round_index] = commitment


def open_next_round(ctx: AggregatorContext, previous: int) -> None:
    posted = ctx.ledger.global_models_posted(round=previous)
    if not posted:
        raise RoundFailed(f"round {previous} is closed but its global model is not on the ledger")
    workdir = ctx.state_dir / f"round-{previous + 1}"
    workdir.mkdir(parents=True, exist_ok=True)
    # Sealed to the readers of round `previous`: re-sealed if a member joined (or rotated its key) since.
    base_cid = ctx.vault.reseal_for(posted[0].cid, posted[0].digest, ctx.readers(), workdir)
    check_can_open(ctx.ledger, ctx.store, previous + 1, ctx.privacy)
    with ctx.phases.measure(previous + 1, "open"):
        ctx.ledger.open_round(ctx.account, previous + 1, base_cid, posted[0].digest)
    publish_noise_commitment(ctx, previous + 1)
    log.info("opened round %d from %s (global model %s)", previous + 1, base_cid, posted[0].cid)


def ledger_events(ctx: AggregatorContext) -> LedgerEventSource | None:
    """The aggregator's ledger event source, started on first use (None: the ledger has no RPC URL)."""
    if ctx.events is None:
        ctx.events = LedgerEventSource.for_ledger(
            ctx.ledger, use_websocket=ctx.use_websocket, poll_seconds=ctx.poll_interval
        )
        if ctx.events is not None:
            ctx.prefetcher = UpdatePrefetcher(
                ctx.ledger,
                lambda: ctx.vault,
                lambda r: ctx.state_dir / f"round-{r}" / "prefetch",
                ctx.prefetched,
                (ctx.master_public_key, ctx.verified),
            ).__enter__()
            ctx.events.on_log(ctx.prefetcher.on_log)
            ctx.events.start()
    return ctx.events


def close_ledger_events(ctx: AggregatorContext) -> None:
    if ctx.events is not None:
        ctx.events.close()
        ctx.events = None
    if ctx.prefetcher is not None:
        ctx.prefetcher.__exit__()
        ctx.prefetcher = None


def wait_for_updates(ctx: AggregatorContext, round_index: int, stop: threading.Event) -> list[UpdateSubmitted]:
    """Until every active institution (or ``min_updates``) submitted, or the deadline passed.

    Wakes at each ledger event (pushed); each look reads only the blocks mined since the last.
    """
    active = _readers_of_base(ctx, round_index, ctx.ledger.active_institutions())
    wanted = ctx.min_updates or len(active)
    deadline = time.monotonic() + ctx.round_deadline_seconds
    until = time.strftime("%H:%M:%S", time.gmtime(time.time() + ctx.round_deadline_seconds))
    said: list[str] | None = None
    source = ledger_events(ctx)
    while not stop.is_set():
        seen = source.seen if source is not None else 0
        events = ctx.ledger.updates_submitted(round=round_index)
        missing = _names_missing(ctx, active, events)
        ctx.board.status = {
            "state": "collecting",
            "round": round_index,
            "updates": len(events),
            "waiting_on": missing,
            "deadline_utc": until,
        }
        if len(events) >= wanted or (events and time.monotonic() >= deadline):
            return events
        if missing != said:  # say whom the round waits for, once per change
            log.info(
                "round %d: %d of %d updates in; waiting for %s until %s UTC",
                round_index,
                len(events),
                wanted,
                ", ".join(missing) or "nobody",
                until,
            )
            said = missing
        if source is None:
            time.sleep(ctx.poll_interval)
        else:
            source.wait_for_log(seen, min(RECHECK_SECONDS, max(0.0, deadline - time.monotonic()) + 0.01))
    raise RoundFailed("stopped while waiting for updates")


def _readers_of_base(ctx: AggregatorContext, round_index: int, active: list[RosterEntry]) -> list[RosterEntry]:
    """The active members the round's base is sealed to: one that joined after the round opened
    cannot open its base, so the round does not wait for it; it takes part from the next round on."""
    opened = ctx.ledger.rounds_opened(round=round_index)
    try:
        readers = ctx.vault.readers_of(opened[0].base_cid) if opened else None
    except FedLedgerError:  # the base out of reach: wait for every active member, as unsealed
        return active
    if readers is None:
        return active
    late = [i.sm9_id for i in active if i.sm9_id not in readers]
    if late:
        log.info("round %d: its base is not sealed to %s (joined since): from round %d on", round_index,
                 ", ".join(late), round_index + 1)  # fmt: skip
    return [i for i in active if i.sm9_id in readers]


def _names_missing(ctx: AggregatorContext, active: list[RosterEntry], events: list[UpdateSubmitted]) -> list[str]:
    """The roster names of active members that have not submitted this round (addresses if unknown)."""
    done = {e.institution.lower() for e in events}
    names = []
    for inst in active:
        if inst.address.lower() not in done:
            try:
                names.append(ctx.consortium.by_address(inst.address).name)
            except KeyError:
                names.append(inst.address)
    return names


def new_session(
    ctx: AggregatorContext,
    record: RoundRecord,
    included: list[str],
    excluded: frozenset[int] = frozenset(),
) -> SigningSession:
    """A fresh signing session for ``record``, timed as the aggregator's config says; who may take
    part and which approvals count is read from the chain (``ChainApprovals``)."""
    return SigningSession(
        ctx.threshold_public,
        ctx.consortium,
        record,
        included,
        ChainApprovals(ctx.ledger, record),
        excluded=excluded,
        signing_grace_seconds=ctx.signing_grace_seconds,
        partial_timeout_seconds=ctx.partial_timeout_seconds,
    )


class EntryCountWatch:
    """Honest signers refuse a record that misses an entry: stop signing it as soon as one lands.

    The count is read from the chain at the first look and again only after a new ledger log was
    pushed (an entry that lands is one), not at every arrival of a node's post; without a live event
    stream it is read at every look. A late entry that slips between the two still makes the post
    revert (EntryCountMismatch), which redoes the manifest as well."""

    def __init__(self, ctx: AggregatorContext, record: RoundRecord) -> None:
        self.ctx = ctx
        self.record = record
        self._seen: int | None = None  # logs delivered at the last read

    def check(self) -> None:
        source = self.ctx.events
        seen = source.seen if source is not None and source.streaming else None
        if seen is not None and seen == self._seen:
            return
        count = self.ctx.ledger.round_state().update_count
        if count != self.record.entry_count:
            raise EntriesChanged(
                f"the round now has {count} entries, the manifest accounts for {self.record.entry_count}"
            )
        self._seen = seen


def authorize(
    ctx: AggregatorContext, record: RoundRecord, included: list[str], stop: threading.Event
) -> tuple[bytes, list[bytes]]:
    """Run signing sessions until one yields a threshold signature and k approvals."""
    excluded: set[int] = set()
    while not stop.is_set():
        session = new_session(ctx, record, included, frozenset(excluded))
        ctx.board.publish(session)
        ctx.board.status = {"state": "signing", "round": record.round, "session": session.session_id}
        started = time.monotonic()
        clock = SessionClock(ctx.board, session, ctx.phases, ctx.poll_interval)
        entries = EntryCountWatch(ctx, record)
        while not stop.is_set() and time.monotonic() - started < ctx.session_timeout_seconds:
            entries.check()
            phase = clock.tick()
            if phase == "ready" and post_would_pass(ctx, session) and session.signature_der is not None:
                return session.signature_der, [approval for _, approval in session.approval_list()]
            if phase == "failed":
                if session.cheaters:
                    names = [ctx.consortium.by_share(i).name for i in session.cheaters]
                    log.warning("round %d: partial signatures from %s failed the check", record.round, names)
                if session.unresponsive:
                    names = [ctx.consortium.by_share(i).name for i in session.unresponsive]
                    log.warning("round %d: %s committed but sent no partial signature", record.round, names)
                excluded |= set(session.cheaters) | set(session.unresponsive)
                break
            clock.wait()
        else:
            log.warning("round %d: session %s timed out; starting a new one", record.round, session.session_id)
        if len(ctx.consortium.members) - len(excluded) < ctx.threshold_public.k:
            raise RoundFailed(f"round {record.round}: fewer than k honest signers remain")
    raise RoundFailed("stopped while signing")


def post_would_pass(ctx: AggregatorContext, session: SigningSession) -> bool:
    """Simulate ``postGlobalModel`` (``eth_call``) with the session's approvals before sending it.

    An approval the contract refuses (it passed the session's checks, then the chain moved: its
    signer was removed, say) is named, dropped, and the session waits for another: False. Any other
    revert is raised for the main loop, which retries the round.
    """
    if session.signature_der is None:
        return False
    approvals = session.approval_list()
    record = GlobalModelRecord.from_round_record(session.record, session.signature_der)
    try:
        ctx.ledger.simulate_post_global_model(ctx.account.address, record, [a for _, a in approvals])
    except (InvalidApprovalSignature, ApproverNotActive) as exc:
        index = int(exc.fields["index"])
        offender = approvals[index][0] if 0 <= index < len(approvals) else None
        log.warning("round %d: dropping approval from %s: %s", session.record.round, offender, exc)
        session.drop_approval(offender)
        return False
    except NotEnoughApprovals as exc:
        log.warning("round %d: %s; waiting for more approvals", session.record.round, exc)
        session.drop_approval(None)
        return False
    return True


def round_base(ctx: AggregatorContext, round_index: int) -> tuple[RoundOpened, Path, dict[str, torch.Tensor]]:
    """The round's opening event, its work folder, and the base model it was opened with."""
    opened = ctx.ledger.rounds_opened(round=round_index)[0]
    workdir = ctx.state_dir / f"round-{round_index}"
    workdir.mkdir(parents=True, exist_ok=True)
    base_path = workdir / "base.safetensors"
    ctx.vault.get(opened.base_cid, opened.base_digest, base_path)
    base_state, _ = load_global(base_path)
    return opened, workdir, base_state


def build_manifest(ctx: AggregatorContext, round_index: int, stop: threading.Event) -> RoundManifest:
    """Check every entry of the round, store the global model and the manifest; returns the manifest."""
    opened, workdir, base_state = round_base(ctx, round_index)
    publish_noise_commitment(ctx, round_index)  # again after a restart: the board starts empty
    with ctx.phases.measure(round_index, "wait"):
        events = wait_for_updates(ctx, round_index, stop)
    align_started = time.perf_counter()
    roster = ctx.ledger.roster_view()  # identities and readers from one read
    readers_then = readers_now(roster, ctx.consortium)
    updates = ledger_updates(ctx.ledger.chain_id, ctx.ledger.address, events, roster.identities())
    ctx.board.status = {"state": "aggregating", "round": round_index, "updates": len(events)}
    rule = AggregationRule(
        ctx.aggregation_rule,
        ctx.policy or ValidationPolicy(),
        selection=ctx.selection,
        server_momentum=ctx.server_momentum,
    )
    secret = None
    if ctx.privacy is not None:  # the secret sealed to this round's readers: the co-signers
        noise, secret = publish_secret(
            ctx.vault, readers_then, ctx.state_dir, ctx.ledger.chain_id, ctx.ledger.address, round_index
        )
        rule = replace(rule, privacy=ctx.privacy, noise=noise)
    readers = ctx.vault.round_readers(opened.base_cid, readers_then)
    vault = PrefetchedVault.over(ctx.vault, ctx.prefetched)  # updates opened while the others trained
    computation = compute_round(
        vault,
        ctx.master_public_key,
        ctx.spec,
        base_state,
        opened.base_digest,
        updates,
        rule,
        workdir,
        readers,
        noise_secret=secret,
        verified=ctx.verified,
        before_previous=before_previous_model(ctx.ledger, ctx.vault, round_index, workdir, rule),
    )
    if not computation.included:
        reasons = {e.institution: e.code.value for e in computation.excluded}
        raise RoundFailed(f"round {round_index}: no valid update ({reasons})")
    return seal_global(ctx, round_index, opened.base_digest, workdir, computation, rule, align_started)


def seal_global(
    ctx: AggregatorContext,
    round_index: int,
    base_digest: bytes,
    workdir: Path,
    computation: RoundComputation,
    rule: AggregationRule,
    started: float,
) -> RoundManifest:
    """Store the computed global model sealed to the readers; the manifest for it (it stays public)."""
    global_path = workdir / f"global-r{round_index}.safetensors"
    global_digest = save_global(global_path, computation.state, ctx.spec, round_index + 1)
    global_cid, sealed_digest = ctx.vault.put(global_path, ctx.readers())
    if sealed_digest != global_digest:
        raise RoundFailed(f"round {round_index}: the global model changed while it was sealed")
    ledger = (ctx.ledger.chain_id, ctx.ledger.address)
    manifest = computation.manifest(ledger, round_index, base_digest, global_cid, global_digest, rule)
    ctx.phases.add(round_index, "align", time.perf_counter() - started)
    return manifest


def run_round(ctx: AggregatorContext, round_index: int, stop: threading.Event) -> RoundManifest | None:
    """Build, authorize and post round ``round_index``; None when an update landed meanwhile (the
    post reverted or the signers saw more entries), so the caller redoes the round's manifest."""
    from aggregator.secagg_phases import build_secure_manifest  # it builds on this module

    manifest = (build_secure_manifest if ctx.secure_aggregation else build_manifest)(ctx, round_index, stop)
    manifest_cid = ctx.store.put(manifest.to_bytes())
    record = manifest.round_record(manifest_cid)
    included = [row.institution for row in manifest.included]
    try:
        signature, approvals = authorize(ctx, record, included, stop)
        with ctx.phases.measure(round_index, "post"):
            ctx.ledger.post_global_model(ctx.account, GlobalModelRecord.from_round_record(record, signature), approvals)
    except (EntriesChanged, EntryCountMismatch) as exc:
        log.warning("round %d: %s; redoing the manifest", round_index, exc)
        return None
    log.info(
        "round %d posted: %s with %d updates (%d left out, manifest %s)",
        round_index,
        record.global_cid,
        len(manifest.included),
        len(manifest.excluded),
        manifest_cid,
    )
    ctx.phases.log_round(round_index)
    return manifest


def check_role(ctx: AggregatorContext) -> None:
    """Raise AggregatorMisconfigured unless a ledger is at the address and this key is its aggregator."""
    if not ctx.ledger.w3.eth.get_code(ctx.ledger.address):
        raise AggregatorMisconfigured(f"no contract at {ctx.ledger.address} on chain {ctx.ledger.chain_id}")
    aggregator = ctx.ledger.aggregator()
    if aggregator.lower() != ctx.account.address.lower():
        raise AggregatorMisconfigured(
            f"{ctx.account.address} is not the aggregator of ledger {ctx.ledger.address} (it is {aggregator})"
        )


def advance(ctx: AggregatorContext, rounds: int, stop: threading.Event) -> int | None:
    """One step of the protocol as the ledger says; the number of rounds posted once ``rounds`` are."""
    state = ctx.ledger.round_state()
    if not state.started:
        open_first_round(ctx)
    elif state.open:
        run_round(ctx, state.round, stop)
    elif state.round + 1 >= rounds:
        ctx.board.status = {"state": "done", "rounds": state.round + 1}
        return state.round + 1
    else:
        open_next_round(ctx, state.round)
    return None


def run_aggregator(ctx: AggregatorContext, rounds: int, stop: threading.Event | None = None) -> int:
    """Drive the ledger until ``rounds`` rounds are posted; returns the number posted.

    A failure in one step (a bad entry, a revert, the chain or store out of reach, too few signers)
    is logged once, shown in the API's status with its reason, and retried with a growing pause;
    only ``stop`` or a misconfiguration (AggregatorMisconfigured) ends the loop.
    """
    if ctx.privacy is None:
        members = len(ctx.consortium.members)
        from aggregator.secagg_phases import secure_rule  # it builds on this module

        secagg = secure_rule(ctx).secagg if ctx.secure_aggregation else None
        ctx.privacy = planned_privacy(ctx.dp_epsilon, ctx.dp_delta, ctx.dp_clip, rounds, members, secagg)
    try:
        return drive_rounds(ctx, rounds, stop or threading.Event())
    finally:
        close_ledger_events(ctx)
        ctx.board.feed.close()  # end the nodes' long-polls, so the API can shut down at once


def drive_rounds(ctx: AggregatorContext, rounds: int, stop: threading.Event) -> int:
    checked = False
    last_problem = ""
    delay = ctx.poll_interval
    posted = 0
    while not stop.is_set():
        try:
            if not checked:
                check_role(ctx)
                checked = True
            done = advance(ctx, rounds, stop)
            if done is not None:
                return done
            posted = ctx.ledger.round_state().round
            last_problem, delay = "", ctx.poll_interval
        except AggregatorMisconfigured:
            raise
        except Exception as exc:  # one step failed: say why, never exit on it
            problem = f"{type(exc).__name__}: {exc}" if not isinstance(exc, FedLedgerError) else str(exc)
            if problem != last_problem:
                log.error("aggregator: %s; retrying", problem)
            last_problem = problem
            ctx.board.status = {"state": "retrying", "reason": problem}
            stop.wait(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_SECONDS)
    return posted
