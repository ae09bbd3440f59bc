"""Running a role from its kit so that a re-issued kit (a member joined or left) is picked up.

The role runs until done or until the kit's roster, threshold data, share, reader keys or plan copy
change on disk; then it is rebuilt from the kit and resumes from the ledger, as after any restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fedledger.consortium import kits as k

log = logging.getLogger(__name__)
T = TypeVar("T")
WATCHED = (k.PLAN_FILE, f"{k.KEYS}/{k.ROSTER_NAME}", f"{k.KEYS}/{k.THRESHOLD_NAME}", k.SHARE, k.READER_KEYS)


def fingerprint(folder: Path) -> tuple[tuple[int, int], ...]:
    out = []
    for name in WATCHED:
        try:
            stat = (folder / name).stat()
            out.append((stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            out.append((0, 0))
    return tuple(out)


def run_reloading(folder: Path, run: Callable[[threading.Event], T], interval: float = 1.0) -> T:
    """Call ``run(stop)``; when the kit changes, set ``stop``, and call it again on the new kit."""
    while True:
        before = fingerprint(folder)
        stop = threading.Event()
        finished = threading.Event()

        def watch(
            before: tuple[tuple[int, int], ...] = before,
            stop: threading.Event = stop,
            finished: threading.Event = finished,
        ) -> None:
            while not finished.wait(interval):
                if fingerprint(folder) != before:
                    stop.set()
                    return

        watcher = threading.Thread(target=watch, daemon=True, name="kit-watcher")
        watcher.start()
        try:
            result = run(stop)
        finally:
            finished.set()
            watcher.join(timeout=interval + 1)
        if not stop.is_set():
            return result
        _settled(folder, interval)
        log.info("the kit in %s was re-issued: reloading roster, keys and plan", folder)


def _settled(folder: Path, interval: float, quiet_polls: int = 3) -> None:
    """Wait until the kit stops changing: a re-issue writes its files one after another."""
    last, quiet = fingerprint(folder), 0
    while quiet < quiet_polls:
        time.sleep(interval)
        now = fingerprint(folder)
        quiet = quiet + 1 if now == last else 0
        last = now
