"""``aggregator start KIT``: the aggregator's config from its kit (the model from the plan's task), then run."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from aggregator.config import AggregatorConfig, save_config
from aggregator.context import build_context
from aggregator.driver import RoundFailed, run_aggregator
from aggregator.http_api import SessionBoard
from fedledger.consortium.kits import READER_KEYS, Kit, load_kit
from fedledger.consortium.metrics import MetricBoard
from fedledger.consortium.preflight import check_aggregator, check_ledger, check_sealing
from fedledger.consortium.reload import run_reloading

log = logging.getLogger(__name__)
LAST_METRICS_WAIT_SECONDS = 60.0


def aggregator_config(kit: Kit) -> AggregatorConfig:
    plan = kit.plan
    return AggregatorConfig(
        rpc_url=plan.chain.rpc_url,
        contract=kit.contract,
        store=plan.store.spec,
        host=plan.aggregator.bind_host,
        port=plan.aggregator.port,
        model=plan.task.task().model_spec().to_dict(),
        init_seed=plan.training.seed,
        round_deadline_seconds=plan.deadlines.round_seconds,
        session_timeout_seconds=plan.deadlines.session_seconds,
    )


def _await_last_metrics(
    metrics: MetricBoard, round_index: int, members: int, seconds: float, stop: threading.Event
) -> None:
    """Keep serving a moment after the last round, so the sites' reports on it arrive."""
    deadline = time.monotonic() + seconds
    while round_index >= 0 and metrics.count(round_index) < members and time.monotonic() < deadline:
        if stop.wait(0.5):
            return


def start_aggregator(kit_folder: Path, password: str, rounds: int, board: SessionBoard, unsealed: bool = False) -> int:
    """Check reader keys, chain and role, then drive rounds (reloading a re-issued kit); returns rounds
    posted. ``unsealed`` lets a kit provisioned before sealing run with plaintext files."""

    def run(stop: threading.Event) -> int:
        kit = load_kit(kit_folder).require("aggregator")
        config = aggregator_config(kit)
        save_config(config, kit.folder)
        ctx = build_context(config, kit.folder, password, board)
        metrics = board.metrics = MetricBoard(ctx.consortium, ctx.state_dir / "metrics.json")
        reader = ctx.consortium.aggregator.sm9_identity if ctx.consortium.aggregator else "the aggregator"
        check_sealing(ctx.consortium, ctx.reader_keys, reader, kit.folder / READER_KEYS, unsealed)
        check_ledger(ctx.ledger, kit.chain_id, config.rpc_url)
        check_aggregator(ctx.ledger, ctx.account.address)
        log.info(
            "aggregator of ledger %s: model %s from task %r; %d member(s), k = %d",
            ctx.ledger.address,
            ctx.spec.family,
            kit.plan.task.name,
            len(ctx.consortium.members),
            ctx.consortium.threshold,
        )
        try:
            posted = run_aggregator(ctx, rounds, stop)
        except RoundFailed:
            if stop.is_set():  # the kit changed mid-round: rebuild and resume from the ledger
                return 0
            raise
        _await_last_metrics(metrics, posted - 1, len(ctx.consortium.members), LAST_METRICS_WAIT_SECONDS, stop)
        return posted

    return run_reloading(kit_folder, run)
