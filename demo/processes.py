"""Parties as child processes of a demo or benchmark, each with its own log, all stopped on the way out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

CLI = [sys.executable, "-m", "fedledger.cli"]


class ChildProcesses:
    """Child processes with their logs (``logs/<name>.log``); ``stop()`` ends every one still running."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "FEDLEDGER_TORCH_THREADS": "1"}
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.children[name] = proc
        return proc

    def log_of(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(encoding="utf-8", errors="replace")

    def failed(self) -> list[str]:
        return [n for n, p in self.children.items() if p.poll() not in (None, 0)]

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.children.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def node_run_args(home: Path, rounds: int, *extra: str) -> list[str]:
    """``fedledger node run`` for the institution whose config folder is ``home`` (its password beside it)."""
    return [
        *CLI,
        "node",
        "run",
        "-c",
        str(home),
        "--rounds",
        str(rounds),
        "--password-file",
        str(home / "password"),
        *extra,
    ]
