"""A member added while the federation runs: the running nodes and the aggregator notice their
re-issued kits, reload them (new split, new roster) without being restarted, and the new member
takes part from the next round (the open round's base was sealed before it joined, so the round
does not wait for it), which k of the four sign. Every party its own process, real Anvil.

Round 0 cannot finish before the change: hospital-3 starts only after it (the aggregator waits
for every active member, and the deadline is long), so the test does not depend on timing."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from fedledger.chain.localchain import LocalChain
from tests.consortium.test_consortium_e2e import FEDLEDGER, _free_port, audit_summary, institution, run

TIMEOUT = 900.0


def _wait_for(path: Path, text: str, procs: dict[str, subprocess.Popen[bytes]], deadline: float) -> None:
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
        assert not failed, f"{failed} exited early"
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path.name}"
        time.sleep(1.0)


def test_a_member_added_mid_run_joins_and_the_running_parties_reload_their_kits(
    anvil_chain: LocalChain, tmp_path: Path
) -> None:
    digits = '{ kind = "builtin", path = "digits", partitions = 4, index = %d }'
    plan = tmp_path / "consortium.toml"
    plan.write_text(
        f'name = "live"\nk = 2\n[chain]\nrpc_url = "{anvil_chain.rpc_url}"\nchain_id = 31337\n'
        f'[store]\nspec = "local:{tmp_path / "store"}"\n[aggregator]\nurl = "https://127.0.0.1:{_free_port()}"\n'
        '[task]\ninput_shape = [1, 8, 8]\nlabels = ["0","1","2","3","4","5","6","7","8","9"]\n'
        'model = { family = "cnn", hidden = [8, 16] }\n[training]\nepochs = 1\n[deadlines]\nround_seconds = 400\n'
        + "".join(institution(f"hospital-{i + 1}", 0.5, digits % i) for i in range(3)),
        encoding="utf-8",
    )
    run(["consortium", "provision", "consortium.toml", "--out", "kits"], tmp_path)
    run(["chain", "deploy", "--plan", "consortium.toml", "--kits", "kits"], tmp_path)

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FEDLEDGER_TORCH_THREADS": "1"}
    procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(name: str, role: str) -> None:
        log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        args = [role, "start", f"kits/{name}", "--password-file", f"kits/{name}.password", "--rounds", "2"]
        procs[name] = subprocess.Popen([*FEDLEDGER, *args], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)

    deadline = time.monotonic() + TIMEOUT
    try:
        start("aggregator", "aggregator")
        for name in ("hospital-1", "hospital-2"):
            start(name, "node")
        _wait_for(tmp_path / "aggregator.log", "waiting for hospital-3", procs, deadline)

        with plan.open("a", encoding="utf-8") as fh:
            fh.write(institution("hospital-4", 0.25, digits % 3))
        run(["consortium", "add-member", "consortium.toml", "--kits", "kits", "--name", "hospital-4"], tmp_path)
        start("hospital-3", "node")
        start("hospital-4", "node")

        while any(p.poll() is None for p in procs.values()):
            failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
            assert not failed, f"{failed} failed: " + (tmp_path / f"{failed[0]}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the federation did not finish in time"
            time.sleep(1.0)
        assert all(p.returncode == 0 for p in procs.values())
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    aggregator = (tmp_path / "aggregator.log").read_text()
    assert "was re-issued: reloading" in aggregator
    # round 0's base was sealed before hospital-4 joined: the round does not wait for it, round 1 has it
    assert "round 0: its base is not sealed to inst:hospital-4 (joined since): from round 1 on" in aggregator
    assert "with 3 updates" in aggregator.split("round 0 posted")[1].splitlines()[0]
    assert "with 4 updates" in aggregator.split("round 1 posted")[1].splitlines()[0]
    for name in ("hospital-1", "hospital-2"):
        assert "was re-issued: reloading" in (tmp_path / f"{name}.log").read_text(), name
    summary = audit_summary(tmp_path)
    assert summary["all_verified"], summary["failures"]
    assert summary["global_models"]["verified"] == 2 and summary["updates"]["verified"] == 7
