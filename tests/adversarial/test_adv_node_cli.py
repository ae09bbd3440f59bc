"""Item 5 of issue #10, as a real process: `fedledger node run` for an institution the ledger has
removed says so in one line and exits non-zero at once, instead of polling forever or crashing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from demo.in_process import InProcessConsortium
from fedledger.chain.approvals import MembershipChange
from fedledger.chain.localchain import LocalChain


def test_node_run_for_a_removed_institution_exits_at_once_naming_the_problem(
    anvil_chain: LocalChain, tmp_path: Path
) -> None:
    c = InProcessConsortium.create(tmp_path / "consortium", anvil_chain)
    ledger, removed = c.nodes[0].ledger, c.nodes[4]
    k = ledger.threshold()
    change = MembershipChange.remove(removed.account.address, k)
    approvals = [ledger.approve_membership_change(n.account, change) for n in c.nodes[:k]]
    ledger.remove_institution(c.nodes[0].account, change.account, k, approvals)
    home = c.layout.node_dirs[4]
    fedledger = str(Path(sys.executable).with_name("fedledger"))  # the console script of this venv
    run = subprocess.run(
        [fedledger, "node", "run", "-c", str(home), "--password-file", str(home / "password")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "not an active institution" in run.stderr and "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
