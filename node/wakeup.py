"""What wakes a waiting node: a ledger event (pushed by the chain) or a signing-session change
(long-polled from the aggregator), whichever comes first; the poll interval is only the fallback.

Both feeds are outbound connections from the node (a WebSocket to its RPC endpoint, an HTTPS
long-poll to the aggregator), so hospitals' firewalls need no inbound rule. A feed that breaks is
retried in the background; meanwhile the node falls back to its poll interval, and whatever it
missed it reads from the ledger and the session as it always did.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any

import httpx

from fedledger.chain.events import LedgerEventSource
from node.http_client import aggregator_client

log = logging.getLogger(__name__)

LONG_POLL_SECONDS = 20.0  # the aggregator answers earlier on any change
RETRY_SECONDS = 2.0  # after a failed long-poll (aggregator restarting, network away)
# One of each per institution and round: waking every node at each would be n wake-ups for each of
# n nodes; a node learns what it needs of them when the session asks it to check the record.
QUIET_EVENTS = ("UpdateSubmitted", "AccessRecorded")
LIVE_RECHECK_SECONDS = 5.0  # the fallback's pace while both feeds are live (retries after a transient error)


class NodeWakeup:
    """``wait(timeout)`` returns as soon as either feed reports a change, or after ``timeout``."""

    def __init__(self, ctx: Any, stop: threading.Event, *, use_websocket: bool = True) -> None:
        self.ctx = ctx
        self.stop = stop
        self._flag = threading.Event()
        self._closed = threading.Event()
        self.sessions_live = False  # True while the long-poll answers
        self.ledger_events = LedgerEventSource.for_ledger(
            ctx.ledger, use_websocket=use_websocket, poll_seconds=ctx.poll_interval
        )
        self._watcher = threading.Thread(target=self._watch_sessions, name=f"{ctx.name}-sessions", daemon=True)

    def __enter__(self) -> NodeWakeup:
        if self.ledger_events is not None:
            quiet = {self.ctx.ledger.event_topic(name) for name in QUIET_EVENTS}
            self.ledger_events.on_log(lambda entry: None if _first_topic(entry) in quiet else self._flag.set())
            self.ledger_events.start()
        self._watcher.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._closed.set()
        if self.ledger_events is not None:
            self.ledger_events.close()

    @property
    def live(self) -> bool:
        """Both feeds are up: nothing is missed by waiting longer than the poll interval."""
        return self.sessions_live and self.ledger_events is not None and self.ledger_events.streaming

    def wait(self, poll_interval: float) -> None:
        """Sleep until a feed fires, the fallback interval passes, or the node is stopped (checked every 0.5 s).

        The fallback is ``poll_interval`` while a feed is down, ``LIVE_RECHECK_SECONDS`` while both are live.
        """
        remaining = max(poll_interval, LIVE_RECHECK_SECONDS) if self.live else poll_interval
        while remaining > 0 and not self.stop.is_set():
            step = min(remaining, 0.5)
            if self._flag.wait(step):
                break
            remaining -= step
        self._flag.clear()

    def _watch_sessions(self) -> None:
        """Long-poll the aggregator's session-change feed; each new version wakes the node."""
        url = f"{self.ctx.aggregator_url}/sessions/changes"
        version, feed = -1, ""  # the first answer (any version) wakes the node once
        with aggregator_client(self.ctx.aggregator_tls, LONG_POLL_SECONDS + 10) as http:
            while not (self._closed.is_set() or self.stop.is_set()):
                try:
                    params: dict[str, str | int | float] = {
                        "since": max(version, 0),
                        "feed": feed,
                        "wait": LONG_POLL_SECONDS,
                    }
                    response = http.get(url, params=params)
                    if response.status_code == 404:  # an aggregator without the feed: polling only
                        log.info("%s: the aggregator has no session-change feed; polling", self.ctx.name)
                        return
                    response.raise_for_status()
                    answer = response.json()
                    latest, feed, feed_open = int(answer["version"]), str(answer["feed"]), bool(answer["open"])
                except (httpx.HTTPError, ValueError, KeyError, TypeError):
                    self.sessions_live = False
                    self._flag.set()  # a feed went down: look now, then poll until it is back
                    self._closed.wait(RETRY_SECONDS)
                    continue
                if latest != version:
                    version = latest
                    self._flag.set()
                self.sessions_live = feed_open
                if not feed_open:  # the aggregator is shutting down: ask again later, not in a loop
                    self._closed.wait(RETRY_SECONDS)


def _first_topic(entry: dict[str, Any]) -> str:
    topics = entry.get("topics") or [""]
    return str(topics[0]).lower()
