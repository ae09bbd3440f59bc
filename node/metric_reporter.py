"""The node's per-round metric: score each posted global model on the local validation split and
send the signed number to the aggregator (HTTP only, so it never races the node's transactions).

Runs beside the round loop; what it has reported is remembered in the state folder, so a restart
neither repeats nor skips a round. A round whose global model is not sealed to this node (posted
before it joined) has no metric from it.
"""

from __future__ import annotations

import json
import logging
import threading

import httpx

from fedledger.consortium.metrics import make_report, signed
from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_text
from fedledger.fl import Dataset, evaluate, load_global
from fedledger.protocol.errors import SealedModelError
from node.http_client import aggregator_client
from node.participant import NodeContext

log = logging.getLogger(__name__)


class MetricReporter:
    def __init__(self, ctx: NodeContext, validation: Dataset, metric: str) -> None:
        self.ctx = ctx
        self.validation = validation
        self.metric = metric
        self.done_file = ctx.state_dir / "metrics-reported.json"

    def _reported(self) -> set[int]:
        try:
            return set(json.loads(self.done_file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return set()

    def report_posted(self, http: httpx.Client) -> None:
        """Score and report every posted round not reported yet."""
        done = self._reported()
        for posted in self.ctx.ledger.global_models_posted():
            if posted.round in done:
                continue
            path = self.ctx.state_dir / f"round-{posted.round}" / "global.safetensors"
            try:
                self.ctx.vault.get(posted.cid, posted.digest, path)
            except SealedModelError as exc:  # sealed before this node joined: it is no reader of that round
                log.info("%s: no metric for round %d: %s", self.ctx.name, posted.round, exc)
                done.add(posted.round)
                continue
            state, meta = load_global(path)
            assert meta.spec is not None
            value = evaluate(meta.spec, state, self.validation.X, self.validation.y)[self.metric]
            report = make_report(
                self.ctx.ledger.chain_id,
                self.ctx.ledger.address,
                posted.round,
                self.ctx.account.address,
                self.metric,
                value,
                len(self.validation),
            )
            response = http.post(
                f"{self.ctx.aggregator_url}/rounds/{posted.round}/metrics",
                json=signed(bytes(self.ctx.account.key), report),
            )
            response.raise_for_status()
            log.info(
                "%s: round %d global model: %s %.3f on %d local validation samples",
                self.ctx.name,
                posted.round,
                self.metric,
                value,
                len(self.validation),
            )
            done.add(posted.round)
            atomic_write_text(self.done_file, json.dumps(sorted(done)))

    def report_once(self, http: httpx.Client | None = None) -> None:
        """Report what is due; a failure only postpones it to the next try."""
        try:
            if http is None:
                with aggregator_client(self.ctx.aggregator_tls, self.ctx.http_timeout_seconds) as client:
                    self.report_posted(client)
            else:
                self.report_posted(http)
        except (FedLedgerError, httpx.HTTPError, OSError, ValueError) as exc:
            log.debug("%s: metric report postponed: %s", self.ctx.name, exc)

    def run(self, stop: threading.Event, interval: float = 2.0) -> None:
        with aggregator_client(self.ctx.aggregator_tls, self.ctx.http_timeout_seconds) as http:
            while not stop.wait(interval):
                self.report_once(http)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), daemon=True, name="metric-reporter")
        thread.start()
        return thread
