"""An institution killed with SIGKILL mid-round restarts from the ledger: it submits exactly once
and the round completes with every update."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from demo.in_process import InProcessConsortium
from fedledger.chain.localchain import LocalChain


def test_killed_institution_resumes_and_submits_exactly_once(tmp_path: Path) -> None:
    with LocalChain("anvil") as chain:
        c = InProcessConsortium.create(tmp_path / "consortium", chain)
        victim = c.layout.node_dirs[4]
        command = [sys.executable, "-m", "fedledger.cli", "node", "run", "-c", str(victim),
                   "--rounds", "1", "--password-file", str(victim / "password"), "-v"]  # fmt: skip
        failures: list[BaseException] = []

        def aggregate() -> None:
            try:
                c.run_rounds(1, only=[0, 1, 2, 3])
            except BaseException as exc:
                failures.append(exc)

        driver = threading.Thread(target=aggregate, daemon=True)
        driver.start()
        ledger = c.nodes[0].ledger
        address = c.nodes[4].account.address
        log_path = tmp_path / "victim.log"
        with open(log_path, "wb") as log:
            first = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            deadline = time.monotonic() + 120
            # Kill it once the round is under way: round 0 open and other institutions' updates in.
            while not (ledger.round_state().started and len(ledger.updates_submitted(round=0)) >= 2):
                assert time.monotonic() < deadline, "round 0 never got under way"
                time.sleep(0.1)
            os.kill(first.pid, signal.SIGKILL)
            first.wait()
            second = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=240)
        driver.join(timeout=240)
        assert not failures, failures
        assert second.returncode == 0, log_path.read_text()
        assert len(ledger.updates_submitted(round=0, institution=address)) == 1
        posted = ledger.global_models_posted(round=0)
        assert len(posted) == 1 and posted[0].update_count == 5
