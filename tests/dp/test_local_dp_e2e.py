"""End to end on the real Anvil: one hospital runs `fedledger node run --local-dp-epsilon`, trains round 0
by DP-SGD and declares its parameters on the ledger; restarted, it remembers the spend and refuses
round 1 (still co-signing it); `node status` says why; the audit shows its record-level epsilon,
recomputed, and "no local DP" for the others."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from fastapi.testclient import TestClient

from aggregator.config import load_config as load_aggregator_config
from aggregator.config import save_config as save_aggregator_config
from demo.in_process import InProcessConsortium
from fedledger.audit.api import create_app
from fedledger.audit.service import AuditService
from fedledger.chain.localchain import LocalChain
from fedledger.dp.local import LocalDPRound
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store
from node.local_budget import LocalDPPolicy, LocalPrivacySpend

EPSILON = 8.0


def _aggregate(c: InProcessConsortium, rounds: int, deadline: float) -> tuple[list[BaseException], threading.Thread]:
    """Run the aggregator and hospitals 1-4 in a thread until ``rounds`` are posted; failures are returned."""
    config, base = load_aggregator_config(c.layout.aggregator_dir)
    save_aggregator_config(config.model_copy(update={"round_deadline_seconds": deadline}), base)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            c.run_rounds(rounds, only=[0, 1, 2, 3])
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return failures, thread


def _node(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "fedledger.cli", "node", *args, "-c", str(home),
               "--password-file", str(home / "password")]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def test_a_hospital_with_local_dp_spends_declares_refuses_and_is_audited(
    tmp_path: Path, anvil_chain: LocalChain
) -> None:
    c = InProcessConsortium.create(tmp_path / "consortium", anvil_chain)
    home = c.layout.node_dirs[4]
    dp_run = ("run", "-v", "--local-dp-epsilon", str(EPSILON), "--local-dp-rounds", "1")

    failures, driver = _aggregate(c, 1, deadline=240)  # round 0 waits for every hospital
    first = _node(home, *dp_run, "--rounds", "1")
    driver.join(timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr
    assert not failures, failures

    failures, driver = _aggregate(c, 2, deadline=15)  # round 1 goes on without the refusing hospital
    second = _node(home, *dp_run, "--rounds", "2")  # a restart: only the spend file remembers round 0
    driver.join(timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not failures, failures
    assert "round 1 not trained: local DP-SGD would bring" in second.stdout + second.stderr

    ledger = c.nodes[0].ledger
    address = c.nodes[4].account.address
    assert len(ledger.updates_submitted(round=0)) == 5
    assert [e.institution for e in ledger.updates_submitted(round=1)].count(address) == 0
    post = ledger.global_models_posted(round=1)
    assert len(post) == 1 and post[0].update_count == 4

    policy = LocalDPPolicy(EPSILON, rounds=1)
    counted = LocalPrivacySpend(home / "state", policy).rounds()
    assert list(counted) == [0]
    status = _node(home, "status")
    assert status.returncode == 0, status.stderr
    assert "local DP-SGD: record-level epsilon" in status.stdout and "round 1 not trained" in status.stdout
    mine = ledger.updates_submitted(round=0, institution=address)[0]
    said = [a.purpose for a in ledger.access_records(accessor=address, cid=mine.cid)]
    assert [LocalDPRound.from_statement(s) for s in said] == [counted[0]]

    audit = AuditService(ledger, open_store(c.layout.store_spec), SignMasterPublicKey.load(c.layout.master_public_key))
    answer = TestClient(create_app(audit)).get("/privacy/local")
    assert answer.status_code == 200, answer.text
    members = {m["institution"]: m for m in answer.json()["members"]}
    assert len(members) == 5
    hospital = members[address]
    expected = counted[0].epsilon()
    assert hospital["local_dp"] is True and 7.9 < expected <= EPSILON
    assert hospital["spent_epsilon"] == expected and hospital["delta"] == 1e-5
    rows = [(r["round"], r["epsilon"], r["cumulative_epsilon"]) for r in hospital["rounds"]]
    assert rows == [(0, expected, expected)]
    assert hospital["rounds"][0]["local_dp"] == counted[0].to_dict()
    for other, member in members.items():
        if other != address:
            assert member["local_dp"] is False and member["spent_epsilon"] is None
            assert member["detail"] == "no local DP" and len(member["rounds"]) == 2
