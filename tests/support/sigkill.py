"""Killing a role process at the moment a test wants: the crash-and-resume tests' one tool."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def sigkill_once(
    proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, log_path: Path, timeout: float = 180.0
) -> None:
    """Wait until ``ready()`` (``proc`` must stay alive meanwhile), then SIGKILL it; killed on failure too."""
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"{what} never happened"
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
