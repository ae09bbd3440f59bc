"""Seconds spent in each phase of a round, so the critical path of the protocol is visible.

The aggregator times open, wait, align, commit, partial, aggregate, approve and post; a node times
its train and submit. Each role logs one line per round and ``fedledger bench`` reports the figures.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PHASES = ("open", "train", "submit", "wait", "align", "commit", "partial", "aggregate", "approve", "post")

log = logging.getLogger(__name__)


class PhaseTimes:
    """Seconds per (round, phase) for one role; safe to share between threads."""

    def __init__(self, who: str) -> None:
        self.who = who
        self._lock = threading.Lock()
        self._rounds: dict[int, dict[str, float]] = {}
        self._spans: dict[int, tuple[float, float]] = {}  # perf_counter of the first start, last end

    def add(self, round_index: int, phase: str, seconds: float, ended: float | None = None) -> None:
        """Count ``seconds`` toward ``phase`` of ``round_index`` (a phase that ended at ``ended``, or now)."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; phases are {', '.join(PHASES)}")
        end = time.perf_counter() if ended is None else ended
        with self._lock:
            phases = self._rounds.setdefault(round_index, {})
            phases[phase] = phases.get(phase, 0.0) + seconds
            first, last = self._spans.get(round_index, (end - seconds, end))
            self._spans[round_index] = (min(first, end - seconds), max(last, end))

    @contextmanager
    def measure(self, round_index: int, phase: str) -> Iterator[None]:
        """Time the ``with`` body as ``phase`` of ``round_index`` (also when it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            end = time.perf_counter()
            self.add(round_index, phase, end - start, end)

    def of(self, round_index: int) -> dict[str, float]:
        """The round's phases in protocol order (only those this role timed)."""
        with self._lock:
            phases = dict(self._rounds.get(round_index, {}))
        return {name: phases[name] for name in PHASES if name in phases}

    def span(self, round_index: int) -> float:
        """Wall seconds from the start of the round's first timed phase to the end of its last."""
        with self._lock:
            first, last = self._spans.get(round_index, (0.0, 0.0))
        return last - first

    def log_round(self, round_index: int) -> None:
        figures = ", ".join(f"{name} {seconds:.3f}" for name, seconds in self.of(round_index).items())
        log.info("%s: round %d phases (s): %s", self.who, round_index, figures or "none timed")
