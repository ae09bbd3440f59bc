"""Local chains that crash or are killed: state survives, no orphan holds the port, a busy port is named.

Real Anvil processes, real SIGKILLs. Finding 11 of issue #10: a SIGKILLed ``chain up`` used to
roll the ledger back to its last clean stop and leave Anvil orphaned on its port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from fedledger.chain.compiler import CompiledContract
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.localchain import LocalChain
from fedledger.netutil import free_port
from tests.support.local_ledger import assert_ledger_kept, deploy_and_open_round

FEDLEDGER = str(Path(sys.executable).with_name("fedledger"))


def _wait_gone(pid: int, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_sigkilled_anvil_restarts_from_a_recent_state(
    tmp_path: Path, compiled_ledger: CompiledContract, dev_accounts: DevRoles
) -> None:
    state = tmp_path / "anvil.json"
    chain = LocalChain("anvil", state_path=state).start()
    try:
        deployment = deploy_and_open_round(chain.rpc_url, compiled_ledger, dev_accounts)
        time.sleep(3.5)  # a few state intervals: dumped by Anvil, promoted by the checkpoint thread
        assert chain.pid is not None
        os.kill(chain.pid, signal.SIGKILL)  # no clean stop: nothing is written on the way out
        assert _wait_gone(chain.pid)
        with LocalChain("anvil", state_path=state) as again:
            assert_ledger_kept(again.rpc_url, deployment)
    finally:
        chain.stop()


def test_a_dump_torn_by_a_kill_falls_back_to_the_last_complete_state(
    tmp_path: Path, compiled_ledger: CompiledContract, dev_accounts: DevRoles
) -> None:
    state = tmp_path / "anvil.json"
    with LocalChain("anvil", state_path=state) as chain:
        deployment = deploy_and_open_round(chain.rpc_url, compiled_ledger, dev_accounts)
    complete = state.read_bytes()
    json.loads(complete)
    live = state.with_name(state.name + ".live")
    live.write_bytes(complete[: len(complete) // 2])  # what a SIGKILL in the middle of a dump leaves
    with LocalChain("anvil", state_path=state) as again:
        assert_ledger_kept(again.rpc_url, deployment)
    assert json.loads(state.read_bytes())  # never replaced by the torn dump
    assert not live.exists()  # consumed on stop: a state file restored by hand is not overridden


def _chain_up(port: int, state: Path, deployment_file: Path) -> subprocess.Popen[str]:
    cmd = [FEDLEDGER, "chain", "up", "--port", str(port), "--state", str(state)]
    cmd += ["--institutions", "3", "--threshold", "2", "--deployment-file", str(deployment_file)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_file(
    path: Path, process: subprocess.Popen[str], before: int | None = None, timeout: float = 180.0
) -> dict[str, object]:
    """The deployment file once chain up has (re)written it."""
    deadline = time.monotonic() + timeout
    while not path.exists() or path.stat().st_mtime_ns == before:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "chain up did not write its deployment file"
        time.sleep(0.2)
    time.sleep(0.3)
    return dict(json.loads(path.read_text()))


def test_killed_chain_up_takes_its_anvil_along_and_the_next_one_names_a_busy_port(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state.json"
    deployment_file = tmp_path / "deployment.json"
    first = _chain_up(port, state, deployment_file)
    try:
        deployed = _wait_for_file(deployment_file, first)
        children = psutil.Process(first.pid).children(recursive=True)
        assert children, "chain up runs its chain as a child process"
        time.sleep(2.5)  # let a state checkpoint happen
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)
        assert all(_wait_gone(child.pid) for child in children), "Anvil outlived its killed launcher"
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()

    # The port is free again and the next chain up resumes the same ledger from the saved state.
    before = deployment_file.stat().st_mtime_ns
    second = _chain_up(port, state, deployment_file)
    try:
        resumed = _wait_for_file(deployment_file, second, before)
        assert resumed["address"] == deployed["address"]

        # A third chain up on the port the second one holds says so in one line.
        third = subprocess.run(
            [FEDLEDGER, "chain", "up", "--port", str(port), "--deployment-file", str(tmp_path / "third.json")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert third.returncode == 1
        lines = third.stderr.strip().splitlines()
        assert len(lines) == 1 and f"port {port} is in use" in lines[0], third.stderr
        assert "Traceback" not in third.stderr
    finally:
        second.send_signal(signal.SIGINT)
        _, err = second.communicate(timeout=90)
    assert second.returncode == 0, err
