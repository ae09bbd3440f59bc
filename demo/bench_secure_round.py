"""``fedledger bench secure-round``: a secure-aggregation round against a plain round, in the real protocol.

Both sides run the same consortium (five institutions at widths 1, 1/2, 1/2, 1/4, 1/8, one
process, a real Anvil, the embedded store, SM9, the signing session over mutual TLS); one runs with
``secure_aggregation``. Measured: round 1 from its opening to its post, the aggregator's phases, and
per member the bytes it puts in the store for the round (plain: its sealed update; secure: its
join, shares, masked input and reveal).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from demo.bench_round import MEASURED_ROUND, round_phases
from demo.in_process import InProcessConsortium
from fedledger.chain.localchain import LocalChain
from fedledger.fl import configure_threads
from fedledger.protocol.manifest import read_posted_manifest
from fedledger.protocol.secagg_round import SecAggRecord
from fedledger.store import ContentStore


def _size(store: ContentStore, cid: str) -> int:
    return len(store.read_bytes(cid))


def _member_bytes(consortium: InProcessConsortium, round_index: int) -> dict[str, int]:
    """Bytes each member stored for the round, by member name."""
    node = consortium.nodes[0]
    store, ledger = node.store, node.ledger
    entries = {e.institution.lower(): e.cid for e in ledger.updates_submitted(round=round_index)}
    manifest = read_posted_manifest(store, ledger.global_models_posted(round=round_index)[0])
    out = {}
    for member in node.consortium.members:
        total = _size(store, entries[member.address.lower()])
        if manifest.secagg is not None:
            record = SecAggRecord.from_dict(manifest.secagg)
            m = member.share_index
            total += sum(_size(store, table[m].cid) for table in (record.joins, record.shares, record.reveals))
        out[member.name] = total
    return out


def measure(secure: bool, epochs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fedledger-bench-secure-") as tmp, LocalChain("anvil") as chain:
        consortium = InProcessConsortium.create(Path(tmp), chain, epochs=epochs, secure_aggregation=secure)
        consortium.node_poll, consortium.aggregator_poll = 0.5, 0.25
        aggregator = consortium.run_rounds(MEASURED_ROUND + 1)
        per_member = _member_bytes(consortium, MEASURED_ROUND)
        return {
            "round_seconds": round(aggregator.phases.span(MEASURED_ROUND), 3),
            "phase_seconds": round_phases(aggregator, [node.phases.of(MEASURED_ROUND) for node in consortium.nodes]),
            "bytes_per_member": per_member,
            "median_bytes_per_member": int(statistics.median(per_member.values())),
        }


def run(epochs: int = 1) -> dict[str, Any]:
    configure_threads()
    plain = measure(False, epochs)
    secure = measure(True, epochs)
    return {
        "institutions": 5,
        "local_epochs": epochs,
        "measured_round": MEASURED_ROUND,
        "plain": plain,
        "secure": secure,
        "time_ratio": round(secure["round_seconds"] / plain["round_seconds"], 2),
        "bytes_ratio": round(secure["median_bytes_per_member"] / plain["median_bytes_per_member"], 2),
    }
