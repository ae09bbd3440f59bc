"""``node start KIT``: a node's config from its kit, its data checked against the task, then run.

The kit is the node's home: ``node.toml`` is written into it at every start (so ``node status -c
KIT`` works), state goes under it, and a re-issued kit is picked up at the next round.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fedledger.consortium.kits import READER_KEYS, Kit, KitError
from fedledger.consortium.preflight import check_ledger, check_member, check_sealing
from fedledger.consortium.reload import run_reloading
from fedledger.fl.task import SiteData, site_shard
from node.config import DataConfig, NodeConfig, TrainingConfig, save_config
from node.context import build_context
from node.metric_reporter import MetricReporter
from node.participant import run_node

log = logging.getLogger(__name__)


def site_of(kit: Kit, data_path: str | None) -> SiteData:
    """Where this site's data is: ``--data`` if given, else the plan's path for it."""
    site = kit.plan.institution(kit.name).data.site(data_path)
    if not site.source:
        raise KitError(f"the plan gives {kit.name} no data path: start it with --data PATH")
    return site


def node_config(kit: Kit, site: SiteData) -> NodeConfig:
    plan, inst = kit.plan, kit.plan.institution(kit.name)
    index = [i.name for i in plan.institutions].index(kit.name)
    return NodeConfig(
        name=kit.name,
        sm9_identity=inst.identity,
        width_rate=inst.width,
        rpc_url=plan.chain.rpc_url,
        contract=kit.contract,
        aggregator_url=plan.aggregator.url,
        store=plan.store.spec,
        data=DataConfig(
            source=site.source,
            partitions=site.partitions,
            index=site.index,
            scheme=site.scheme,  # type: ignore[arg-type]
            alpha=site.alpha,
            seed=site.seed,
        ),
        training=TrainingConfig(
            epochs=plan.training.epochs,
            batch_size=plan.training.batch_size,
            learning_rate=plan.training.learning_rate,
            seed=plan.training.seed + index,
        ),
    )


def start_node(
    kit_folder: Path,
    password: str,
    data_path: str | None,
    rounds: int | None,
    insecure_http: bool = False,
    unsealed: bool = False,
) -> int:
    """Check data, reader keys, chain and membership, then follow rounds (reloading a re-issued kit);
    returns rounds posted. ``unsealed`` lets a kit provisioned before sealing run with plaintext files."""
    from fedledger.consortium.kits import load_kit

    def run(stop: threading.Event) -> int:
        kit = load_kit(kit_folder).require("node")
        task = kit.plan.task.task()
        site = site_of(kit, data_path)
        shard = site_shard(site, task)
        log.info(
            "%s: data %s fits task %r: %d training and %d validation samples of shape %s",
            kit.name,
            site.source,
            task.name,
            len(shard.train),
            len(shard.test),
            task.input_shape,
        )
        config = node_config(kit, site)
        save_config(config, kit.folder)
        ctx = build_context(config, kit.folder, password, insecure_http=insecure_http, shard=shard)
        ctx.refresh_data = lambda: site_shard(site, task).train
        check_sealing(ctx.consortium, ctx.reader_keys, config.sm9_identity, kit.folder / READER_KEYS, unsealed)
        check_ledger(ctx.ledger, kit.chain_id, config.rpc_url)
        check_member(ctx.ledger, ctx.account.address, kit.name)
        log.info("%s: member %s of ledger %s; following rounds", kit.name, ctx.account.address, ctx.ledger.address)
        reporter = MetricReporter(ctx, shard.test, task.metric)
        reporter_stop = threading.Event()
        reporting = reporter.start(reporter_stop)
        try:
            posted = run_node(ctx, rounds, stop=stop)
            reporter.report_once()  # the last round's number, before the node exits
            return posted
        finally:
            reporter_stop.set()
            reporting.join(timeout=5)

    return run_reloading(kit_folder, run)
