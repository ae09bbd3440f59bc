"""A whole consortium inside one process: institutions as threads, the aggregator with its HTTP API.

Each institution still has its own keys, ledger client and signer and reaches the aggregator only
over HTTP; only the process is shared. Used by the end-to-end tests and ``fedledger bench round``,
where starting seven Python processes would dominate what is measured.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aggregator.config import load_config as load_aggregator_config
from aggregator.context import build_context
from aggregator.driver import AggregatorContext, run_aggregator
from aggregator.http_api import SessionBoard
from aggregator.http_server import api_server, serve_in_background
from demo.consortium_setup import ConsortiumLayout, setup_consortium
from fedledger.chain.localchain import LocalChain
from fedledger.netutil import free_port
from node.config import load_config as load_node_config
from node.context import build_context as build_node_context
from node.participant import NodeContext, run_node


def password_of(party_dir: Path) -> str:
    return (party_dir / "password").read_text(encoding="utf-8").strip()


@dataclass
class InProcessConsortium:
    layout: ConsortiumLayout
    nodes: list[NodeContext]
    errors: list[BaseException] = field(default_factory=list)
    node_poll: float = 0.1  # seconds between a node's looks at the ledger and the session
    aggregator_poll: float = 0.1

    @classmethod
    def create(
        cls, root: Path, chain: LocalChain, epochs: int = 1, tls: bool = True, **setup: Any
    ) -> InProcessConsortium:
        """Set up a consortium on ``chain`` (``setup``: more ``setup_consortium`` options, e.g. rates)."""
        layout = setup_consortium(root, chain.rpc_url, aggregator_port=free_port(), epochs=epochs, tls=tls, **setup)
        nodes = []
        for home in layout.node_dirs:
            config, base = load_node_config(home)
            nodes.append(build_node_context(config, base, password_of(home), insecure_http=not tls))
        return cls(layout, nodes)

    def aggregator_context(self) -> AggregatorContext:
        config, base = load_aggregator_config(self.layout.aggregator_dir)
        return build_context(config, base, password_of(self.layout.aggregator_dir), SessionBoard())

    def start_nodes(self, rounds: int, stop: threading.Event, only: list[int] | None = None) -> list[threading.Thread]:
        def target(ctx: NodeContext) -> None:
            try:
                run_node(ctx, rounds, poll_interval=self.node_poll, stop=stop)
            except BaseException as exc:  # reported by run_rounds
                self.errors.append(exc)

        chosen = [self.nodes[i] for i in only] if only is not None else self.nodes
        threads = [threading.Thread(target=target, args=(ctx,), daemon=True) for ctx in chosen]
        for t in threads:
            t.start()
        return threads

    def run_rounds(self, rounds: int, timeout: float = 240.0, only: list[int] | None = None) -> AggregatorContext:
        """Run the aggregator (HTTP API + driver) here until ``rounds`` rounds are posted.

        ``only`` names the institutions (indices) to run as threads; the others are left to the caller.
        """
        ctx = self.aggregator_context()
        ctx.poll_interval = self.aggregator_poll
        agg = self.layout.aggregator_dir
        config, base = load_aggregator_config(agg)
        server = api_server(
            ctx.board, config, base, password_of(agg), ctx.consortium.chain_id, insecure_http=not self.layout.tls
        )
        http = serve_in_background(server)
        stop = threading.Event()
        nodes = self.start_nodes(rounds, stop, only)
        timer = threading.Timer(timeout, stop.set)
        timer.start()
        try:
            run_aggregator(ctx, rounds, stop)
        except BaseException:
            stop.set()
            raise
        finally:
            timer.cancel()
            for t in nodes:
                t.join(timeout=60)
            stop.set()
            server.should_exit = True
            http.join(timeout=10)
        if self.errors:
            raise RuntimeError(f"institution thread failed: {self.errors[0]!r}") from self.errors[0]
        return ctx
