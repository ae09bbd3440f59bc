"""The aggregator's side of a secure round: move the phases along, then compute like every node.

join (members post signed round keys, index maps, sample counts) -> the setup is fixed and published
-> share (encrypted Shamir shares, routed through the store) -> masked (each member puts its masked
input in the store and submits its ledger entry) -> the survivor set is fixed and published ->
reveal -> the aggregate is computed by ``compute_secure_round``, the same function every
co-signing node runs. The aggregator only waits, publishes and sums: it holds no member's keys and
no code here opens a member's update (the masked inputs are the only form it ever sees).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from aggregator.secagg_board import SecureBoard, SecureRound
from fedledger.fl import ValidationPolicy
from fedledger.protocol.manifest import RoundManifest
from fedledger.protocol.momentum_history import before_previous_model
from fedledger.protocol.round_check import AggregationRule, ledger_updates
from fedledger.protocol.secagg_noise import NoisePlan, secure_round_privacy
from fedledger.protocol.secagg_round import (
    SecAggRecord,
    SecureMessages,
    SecureRoundError,
    build_setup,
    check_entries,
    compute_secure_round,
    joins_plan,
    publish,
    secure_aggregation_rule,
)
from fedledger.protocol.secagg_rule import SecAggRule

if TYPE_CHECKING:
    from aggregator.driver import AggregatorContext

log = logging.getLogger(__name__)

RECHECK_SECONDS = 1.0


def secure_rule(ctx: AggregatorContext) -> AggregationRule:
    """The manifest rule of a secure round (see ``secure_aggregation_rule``)."""
    policy = ctx.policy or ValidationPolicy()
    return secure_aggregation_rule(policy, len(ctx.consortium.members), ctx.selection, ctx.server_momentum)


def secure_board(ctx: AggregatorContext) -> SecureBoard:
    """The board behind the API's secure routes, made on first use."""
    if ctx.board.secure is None:
        ledger = ctx.ledger
        ctx.board.secure = SecureBoard(
            ctx.store,
            ctx.master_public_key,
            ctx.consortium,
            lambda a: ledger.institution(a).active,
            ctx.state_dir,
            NoisePlan.of(ctx.privacy),
            window=(ctx.spec, secure_rule(ctx)),
        )
    return ctx.board.secure


def _set_phase(ctx: AggregatorContext, sr: SecureRound, phase: str, problem: str = "") -> None:
    with sr.lock:
        sr.phase, sr.problem = phase, problem
    sr.save()  # a restarted aggregator resumes from here
    ctx.board.status = {"state": f"secagg-{phase}", "round": sr.round_index}
    ctx.board.feed.bump()  # nodes long-poll the feed: they act on the new phase at once
    log.info("round %d: secure aggregation phase %s", sr.round_index, phase)


def _wait(
    ctx: AggregatorContext,
    done: Callable[[], bool],
    enough: Callable[[], bool],
    seconds: float,
    stop: threading.Event,
    on_ledger: bool = False,
) -> None:
    """Until ``done``, or past ``seconds`` once ``enough``; wakes at each post (or ledger event)."""
    from aggregator.driver import RoundFailed, ledger_events

    deadline = time.monotonic() + seconds
    source = ledger_events(ctx) if on_ledger else None
    while not stop.is_set():
        version = ctx.board.arrivals.version
        seen = source.seen if source is not None else 0
        if done() or (time.monotonic() >= deadline and enough()):
            return
        timeout = min(RECHECK_SECONDS, max(0.05, deadline - time.monotonic()))
        if source is not None:
            source.wait_for_log(seen, timeout)
        else:
            ctx.board.arrivals.wait(version, timeout)
    raise RoundFailed("stopped during a secure-aggregation phase")


def _member_ids(ctx: AggregatorContext) -> set[int]:
    ids = set()
    for inst in ctx.ledger.active_institutions():
        try:
            ids.add(ctx.consortium.by_address(inst.address).share_index)
        except KeyError:
            continue
    return ids


def _messages(sr: SecureRound) -> SecureMessages:
    assert sr.setup is not None
    return SecureMessages(
        {m: j for m, (_, j) in sr.joins.items()},
        sr.setup[1],
        {m: s for m, (_, s) in sr.shares.items()},
        {m: r for m, (_, r) in sr.reveals.items()},
    )


def run_phases(ctx: AggregatorContext, sr: SecureRound, rule: SecAggRule, shapes: dict, stop: threading.Event) -> None:
    """Drive the round's phases to ``done`` (a phase already passed is not redone)."""
    t = rule.threshold
    if sr.phase == "join":
        active = _member_ids(ctx)
        _wait(ctx, lambda: active <= set(sr.joins), lambda: len(sr.joins) >= t, ctx.round_deadline_seconds, stop)
        with sr.lock:
            joins = {m: j for m, (_, j) in sr.joins.items()}
        setup = build_setup(sr.round_index, rule, joins, shapes)
        sr.setup = (publish(ctx.store, setup.to_bytes()), setup)
        _set_phase(ctx, sr, "share")
    assert sr.setup is not None
    members = set(sr.setup[1].weights)
    if sr.phase == "share":
        _wait(ctx, lambda: members <= set(sr.shares), lambda: len(sr.shares) >= t, ctx.secagg_phase_seconds, stop)
        _set_phase(ctx, sr, "masked")
    if sr.phase == "masked":
        sharing = {ctx.consortium.by_share(m).address.lower() for m in sr.shares}

        def submitted() -> set[str]:
            return {e.institution.lower() for e in ctx.ledger.updates_submitted(round=sr.round_index)} & sharing

        _wait(ctx, lambda: submitted() == sharing, lambda: len(submitted()) >= t, ctx.secagg_phase_seconds, stop, True)
        updates = _updates(ctx, sr)
        valid, excluded = check_entries(ctx.store, ctx.master_public_key, ctx.consortium, _messages(sr), updates)
        for row in excluded:
            log.warning("round %d: %s left out of the secure round: %s", sr.round_index, row.institution, row.reason)
        if len(valid) < t:
            _set_phase(ctx, sr, "failed", f"only {len(valid)} valid masked inputs, threshold is {t}")
            raise SecureRoundError(f"round {sr.round_index}: only {len(valid)} valid masked inputs, threshold is {t}")
        sr.survivors = sorted(valid)
        _set_phase(ctx, sr, "reveal")
    if sr.phase == "reveal":
        survivors = set(sr.survivors)
        _wait(ctx, lambda: survivors <= set(sr.reveals), lambda: len(sr.reveals) >= t, ctx.secagg_phase_seconds, stop)
        _set_phase(ctx, sr, "done")
    if sr.phase == "failed":
        raise SecureRoundError(f"round {sr.round_index}: the secure round failed ({sr.problem})")


def _updates(ctx: AggregatorContext, sr: SecureRound) -> list:
    identities = {i.address.lower(): i.sm9_id for i in ctx.ledger.institutions()}
    events = ctx.ledger.updates_submitted(round=sr.round_index)
    return ledger_updates(ctx.ledger.chain_id, ctx.ledger.address, events, identities)


def build_secure_manifest(ctx: AggregatorContext, round_index: int, stop: threading.Event) -> RoundManifest:
    """Run the secure round's phases, compute the aggregate as every node will, store model and manifest."""
    from aggregator.driver import round_base, seal_global

    opened, workdir, base_state = round_base(ctx, round_index)
    rule = secure_rule(ctx)
    secagg = rule.secagg
    assert secagg is not None
    sr = secure_board(ctx).round(round_index)
    shapes = {name: tuple(t.shape) for name, t in base_state.items()}
    with ctx.phases.measure(round_index, "wait"):
        run_phases(ctx, sr, secagg, shapes, stop)
    started = time.perf_counter()
    assert sr.setup is not None
    record = SecAggRecord(
        sr.setup[0],
        {m: r for m, (r, _) in sr.joins.items()},
        {m: r for m, (r, _) in sr.shares.items()},
        tuple(sr.survivors),
        {m: r for m, (r, _) in sr.reveals.items()},
    )
    updates = _updates(ctx, sr)
    plan = joins_plan({m: j for m, (_, j) in sr.joins.items()})  # what the members declared (and added)
    if plan is not None:  # the members' noise shares are in the sum; the record names what they imply
        rule = replace(rule, privacy=secure_round_privacy(sr.setup[1], plan, sr.survivors))
    computation, aggregate = compute_secure_round(
        ctx.store,
        ctx.master_public_key,
        ctx.consortium,
        round_index,
        base_state,
        updates,
        secagg,
        record,
        dp=rule,
        before_previous=before_previous_model(ctx.ledger, ctx.vault, round_index, workdir, rule),
        spec=ctx.spec,
    )
    for member, why in aggregate.cheaters.items():
        log.warning("round %d: %s lied in the reveal phase: %s", round_index, ctx.consortium.by_share(member).name, why)
    return seal_global(ctx, round_index, opened.base_digest, workdir, computation, rule, started)
