"""Drives one signing session's ticks: wakes on session changes, announces and times phase changes.

The driver used to tick every poll interval; now it sleeps on the board's arrivals (a node's post
wakes it at once) and every phase change is pushed straight back to the long-polling nodes, who are
not woken by each other's posts (that would be n wake-ups per phase for each of n nodes).
The poll interval remains only for time-based transitions (grace periods, partial timeouts).
"""

from __future__ import annotations

import time

from aggregator.http_api import SessionBoard
from aggregator.signing import SigningSession
from fedledger.phases import PhaseTimes

# Session phase -> the round phase its time counts toward.
_TIMED = {"commit": "commit", "sign": "partial", "approve": "approve"}


class SessionClock:
    """Ticks ``session`` when something changed, timing commit, partial, aggregate and approve."""

    def __init__(
        self, board: SessionBoard, session: SigningSession, phases: PhaseTimes, fallback_seconds: float
    ) -> None:
        self.board = board
        self.session = session
        self.phases = phases
        self.fallback_seconds = fallback_seconds
        self._version = board.arrivals.version
        self._since = time.perf_counter()

    def tick(self) -> str:
        """Advance the session once; a phase change is timed and announced to the nodes."""
        before = self.session.phase
        started = time.perf_counter()
        phase = self.session.tick()
        if phase == before:
            return phase
        now = time.perf_counter()
        round_index = self.session.record.round
        if before == "sign" and phase == "approve":  # that tick aggregated the partial signatures
            self.phases.add(round_index, "partial", started - self._since)
            self.phases.add(round_index, "aggregate", now - started)
        elif before in _TIMED:
            self.phases.add(round_index, _TIMED[before], now - self._since)
        self._since = now
        if phase != "ready":  # ready: the post follows at once; waking every node for it costs n requests
            self.board.feed.bump()
        return phase

    def wait(self) -> None:
        """Sleep until a node posts to the session or the fallback interval passes."""
        self._version = self.board.arrivals.wait(self._version, self.fallback_seconds)
