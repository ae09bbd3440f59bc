"""Finding 1 with real processes: a blank CID on chain stays there, so the aggregator meets it again
at every restart. A real ``fedledger aggregator run`` is SIGKILLed mid-round after it has seen the
entry and started again: it rejects the entry with its reason again and completes the round.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx

from demo.in_process import InProcessConsortium
from node.http_client import aggregator_client
from node.participant import NodeContext
from tests.adversarial.scenario import (
    CHEATER,
    HONEST,
    Misbehaving,
    honest_addresses,
    ledger_of,
    open_round,
    report,
    warnings_logged,
)
from tests.support.sigkill import sigkill_once


def _session_up(node: NodeContext, round_index: int) -> bool:
    """Whether the aggregator publishes a signing session for the round (asked as ``node``, over its TLS)."""
    try:
        with aggregator_client(node.aggregator_tls, 5) as http:
            return http.get(f"{node.aggregator_url}/rounds/{round_index}/session").status_code == 200
    except httpx.TransportError:
        return False


def test_a_blank_cid_survives_an_aggregator_restart_and_the_round_completes(federation: InProcessConsortium) -> None:
    r = open_round(federation)
    cheater = Misbehaving(federation.nodes[CHEATER])
    cheater.submit(r, None, cid=" ")
    agg = federation.layout.aggregator_dir
    command = [
        sys.executable, "-m", "fedledger.cli", "aggregator", "run", "-c", str(agg),
        "--rounds", str(r + 1), "--password-file", str(agg / "password"), "-v",
    ]  # fmt: skip
    log_path = agg / f"blank-cid-restart-{r}.log"
    stop = threading.Event()
    ledger = ledger_of(federation)
    with warnings_logged() as logged, open(log_path, "wb") as log:
        nodes = federation.start_nodes(r + 1, stop, only=list(HONEST))
        try:
            first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            # Past the blank entry: every update is in and a signing session is published.
            sigkill_once(first, lambda: _session_up(federation.nodes[0], r), "signing", log_path)
            assert not ledger.global_models_posted(round=r)
            second = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=240)
        finally:
            stop.set()
            for t in nodes:
                t.join(timeout=60)
    text = log_path.read_text()
    assert second.returncode == 0, text
    assert "Traceback" not in text, text
    assert not federation.errors, federation.errors
    outcome = report(federation, r, logged + text.splitlines())
    outcome.assert_rejected(cheater.address, r"unavailable", honest_addresses(federation))
