"""Run ``fedledger demo ... --json`` as the user would (its own process) and return its summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

FEDLEDGER = [sys.executable, "-m", "fedledger.cli"]


def demo_summary(workdir: Path, *flags: str, rounds: int = 2) -> dict[str, Any]:
    """The demo's JSON summary with ``flags``, ``rounds`` rounds of one epoch; fails on a non-zero exit."""
    done = subprocess.run(
        [*FEDLEDGER, "demo", *flags, "--rounds", str(rounds), "--epochs", "1", "--json", "--workdir", str(workdir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary
