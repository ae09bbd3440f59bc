"""``fedledger bench scale``: how a round's protocol cost grows with the number of institutions.

For n in {5, 10, 20, 40} (k = ceil(2n/3)) one consortium runs a few rounds of the real protocol on
its own Anvil: institutions are threads of this process (each with its own keys, ledger client,
WebSocket and HTTPS connections; widths cycle 1, 1/2, 1/2, 1/4, 1/8), the aggregator runs its
driver here and its API on a uvicorn thread, the model is the small digits MLP, one local epoch.

Per n it reports, averaged over the steady-state rounds (round 0 also pays for starting up):
the protocol seconds of a round (open to post, minus the slowest institution's training), the
phases, gas of every transaction of the round, the aggregator driver thread's CPU seconds, the
bytes one institution (the first, width 1) sends and receives over the chain RPC and the
aggregator's API (counted by a TCP relay in front of each) plus what it moves through the store,
and the time of one audit summary over every round run.
"""

from __future__ import annotations

import math
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from aggregator.driver import AggregatorContext
from demo.consortium_setup import DEFAULT_RATES
from demo.in_process import InProcessConsortium
from demo.tcp_relay import TcpRelay
from fedledger.audit.service import AuditService
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles, dev_roles
from fedledger.chain.localchain import LocalChain, rpc_request
from fedledger.fl import configure_threads
from fedledger.phases import PHASES
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store

SIZES = (5, 10, 20, 40)
FUNDING_WEI = 10**21  # 1000 ETH per bench institution, set with anvil_setBalance


def threshold_for(n: int) -> int:
    return math.ceil(2 * n / 3)


def bench_roles(chain: LocalChain, n: int) -> DevRoles:
    """Dev deployer and aggregator, and ``n`` institution accounts derived for the bench and funded on Anvil."""
    dev = dev_roles(1)
    institutions: list[LocalAccount] = []
    for i in range(n):
        account = Account.from_key(keccak(text=f"fedledger bench scale institution {i}"))
        rpc_request(chain.rpc_url, "anvil_setBalance", [account.address, hex(FUNDING_WEI)])
        institutions.append(account)
    return DevRoles(dev.deployer, dev.aggregator, tuple(institutions), dev.outsider)


def _through_relays(consortium: InProcessConsortium, chain: LocalChain) -> tuple[TcpRelay, TcpRelay]:
    """Route the first institution's chain RPC and aggregator API through byte-counting relays."""
    node = consortium.nodes[0]
    assert chain.port is not None
    rpc_relay = TcpRelay(chain.port)
    api_relay = TcpRelay(int(consortium.layout.aggregator_url.rsplit(":", 1)[1]))
    node.ledger = LedgerClient.connect(
        f"http://127.0.0.1:{rpc_relay.port}", node.ledger.address, node.ledger.abi, from_block=node.ledger.from_block
    )
    node.aggregator_url = node.aggregator_url.rsplit(":", 1)[0] + f":{api_relay.port}"
    return rpc_relay, api_relay


def _gas_of_round(ledger: LedgerClient, round_index: int) -> int:
    """Gas of every transaction of the round: its open, submits, access records and post."""
    first = ledger.rounds_opened(round=round_index)[0].meta.block_number
    last = ledger.global_models_posted(round=round_index)[0].meta.block_number
    return sum(int(ledger.w3.eth.get_block(b)["gasUsed"]) for b in range(first, last + 1))


def _store_bytes(consortium: InProcessConsortium, round_index: int) -> int:
    """Model bytes the first institution put into and got from the store in the round (its round folder)."""
    folder = consortium.nodes[0].state_dir / f"round-{round_index}"
    return sum(p.stat().st_size for p in folder.glob("*.safetensors")) + sum(
        p.stat().st_size for p in folder.glob("*.st")
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def measure(n: int, rounds: int, epochs: int = 1) -> dict[str, Any]:
    """Run ``rounds`` rounds with ``n`` institutions; the figures of rounds 1.. averaged."""
    rates = tuple(islice(cycle(DEFAULT_RATES), n))
    with tempfile.TemporaryDirectory(prefix=f"fedledger-bench-scale-{n}-") as tmp, LocalChain("anvil") as chain:
        consortium = InProcessConsortium.create(
            Path(tmp), chain, epochs=epochs, rates=rates, threshold=threshold_for(n), roles=bench_roles(chain, n)
        )
        consortium.node_poll, consortium.aggregator_poll = 0.5, 0.25
        rpc_relay, api_relay = _through_relays(consortium, chain)
        cpu_start = time.thread_time()  # run_rounds drives the aggregator on this thread
        aggregator: AggregatorContext = consortium.run_rounds(rounds, timeout=120.0 + 30.0 * n * rounds)
        cpu = time.thread_time() - cpu_start
        measured = range(1, rounds)
        ledger = aggregator.ledger
        phases = {name: round(_mean([_phase(consortium, aggregator, r, name) for r in measured]), 3) for name in PHASES}
        round_seconds = _mean([aggregator.phases.span(r) for r in measured])
        audit = AuditService(
            ledger,
            open_store(consortium.layout.store_spec),
            SignMasterPublicKey.load(consortium.layout.master_public_key),
        )
        start = time.perf_counter()
        summary = audit.summary()
        audit_seconds = time.perf_counter() - start
        rpc_relay.close()
        api_relay.close()
        return {
            "institutions": n,
            "threshold": threshold_for(n),
            "rounds_run": rounds,
            "round_seconds": round(round_seconds, 3),
            "protocol_seconds": round(round_seconds - phases["train"], 3),
            "phase_seconds": phases,
            "gas_per_round": round(_mean([_gas_of_round(ledger, r) for r in measured])),
            "aggregator_cpu_seconds_per_round": round(cpu / rounds, 3),
            "node_rpc_bytes": {"sent": rpc_relay.sent // rounds, "received": rpc_relay.received // rounds},
            "node_api_bytes": {"sent": api_relay.sent // rounds, "received": api_relay.received // rounds},
            "node_store_bytes_per_round": round(_mean([_store_bytes(consortium, r) for r in measured])),
            "audit_summary_seconds": round(audit_seconds, 3),
            "audit_entries": summary.updates.total + summary.global_models.total,
            "audit_all_verified": summary.all_verified,
        }


def _phase(consortium: InProcessConsortium, aggregator: AggregatorContext, round_index: int, name: str) -> float:
    """The aggregator's time in ``name``, or for train and submit the slowest institution's."""
    if name in ("train", "submit"):
        return max(node.phases.of(round_index).get(name, 0.0) for node in consortium.nodes)
    return aggregator.phases.of(round_index).get(name, 0.0)


def run(sizes: tuple[int, ...] = SIZES, rounds: int = 10, rounds_at_40: int | None = None) -> dict[str, Any]:
    """Every size in turn; ``rounds_at_40`` caps the rounds of the largest consortia (time-bound runs)."""
    configure_threads()
    results = []
    for n in sizes:
        count = rounds_at_40 if (rounds_at_40 is not None and n >= 40) else rounds
        results.append(measure(n, count))
    first, last = results[0], results[-1]
    return {
        "institutions_are": "threads of one process (one Anvil and one aggregator per size)",
        "sizes": results,
        "protocol_seconds_ratio_last_to_first": round(last["protocol_seconds"] / first["protocol_seconds"], 2),
        "institutions_ratio_last_to_first": last["institutions"] / first["institutions"],
    }


def plot(result: dict[str, Any], path: Path) -> Path:
    """Protocol seconds per round (stacked by phase) and gas per round against n, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = result["sizes"]
    ns = [s["institutions"] for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    bottom = [0.0] * len(ns)
    for name in PHASES:
        if name in ("train", "submit"):
            continue  # the aggregator's wait holds the institutions' train and submit
        values = [s["phase_seconds"][name] for s in sizes]
        label = name
        if name == "wait":  # the critical path without the learning work
            values = [max(0.0, v - s["phase_seconds"]["train"]) for v, s in zip(values, sizes, strict=True)]
            label = "wait - train (submit, mining)"
        left.bar([str(n) for n in ns], values, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    per_n = sizes[0]["protocol_seconds"] / ns[0]
    left.plot([str(n) for n in ns], [per_n * n for n in ns], "k--", label="linear from n = 5")
    left.set_xlabel("institutions n (k = ceil(2n/3))")
    left.set_ylabel("seconds per round (phases, without training)")
    left.legend(fontsize=7, ncol=2)
    right.plot(ns, [s["gas_per_round"] / 1e6 for s in sizes], "o-", label="gas per round (M)")
    right.plot(ns, [s["audit_summary_seconds"] for s in sizes], "s-", label="audit summary (s)")
    right.plot(ns, [s["aggregator_cpu_seconds_per_round"] for s in sizes], "^-", label="aggregator CPU s / round")
    right.set_xlabel("institutions n")
    right.legend(fontsize=8)
    fig.suptitle("fedledger bench scale (institutions as threads of one process)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
