"""Ledger events as they happen: a background stream of the contract's logs that wakes waiters.

Roles used to ask the chain every fraction of a second whether something changed; most of a round
was spent in those sleeps. An :class:`LedgerEventSource` keeps one WebSocket subscription
(``eth_subscribe`` to the contract's logs; Anvil and Hardhat serve WebSocket on the RPC port) and
wakes everyone blocked in :meth:`LedgerEventSource.wait_for` the moment a log arrives. Where the
endpoint has no WebSocket (plain HTTP RPC), the same thread polls ``eth_getLogs`` instead.

Nothing is lost when the stream drops: every (re)subscription first reads ``eth_getLogs`` from the
last block seen, so a missed event is caught up from the ledger, delivered once, in chain order.
Logs are only wake-ups and hints; callers still read the ledger for what they act on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fedledger.chain.localchain import rpc_request
from fedledger.errors import FedLedgerError

if TYPE_CHECKING:
    from fedledger.chain.client import LedgerClient

log = logging.getLogger(__name__)

RECONNECT_SECONDS = 1.0  # between attempts to re-open a dropped WebSocket
MAX_RECONNECT_SECONDS = 30.0  # the back-off's ceiling while an endpoint refuses WebSocket
FALLBACK_POLL_SECONDS = 0.25  # eth_getLogs cadence when no WebSocket can be had
HANDSHAKE_TIMEOUT_SECONDS = 5.0

LogCallback = Callable[[dict[str, Any]], None]


class EventStreamError(FedLedgerError):
    """The event source was misused or its endpoint answered nonsense; the message says which."""


def websocket_url(rpc_url: str) -> str:
    """The WebSocket URL of an HTTP(S) RPC endpoint served on the same port (Anvil, Hardhat)."""
    parts = urllib.parse.urlsplit(rpc_url)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None:
        raise EventStreamError(f"cannot derive a WebSocket URL from a {parts.scheme!r} RPC URL")
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def _log_key(entry: dict[str, Any]) -> tuple[int, int]:
    return int(entry["blockNumber"], 16), int(entry["logIndex"], 16)


class LedgerEventSource:
    """One contract's logs, pushed over WebSocket (or polled over HTTP), for synchronous roles.

    ``use_websocket=False`` forces the polling fallback. Start it with :meth:`start` (or ``with``).
    """

    def __init__(
        self,
        rpc_url: str,
        contract: str,
        *,
        from_block: int | None = None,
        use_websocket: bool = True,
        poll_seconds: float = FALLBACK_POLL_SECONDS,
        reconnect_seconds: float = RECONNECT_SECONDS,
    ) -> None:
        self.rpc_url = rpc_url
        self.ws_url = websocket_url(rpc_url) if use_websocket else None
        self.contract = contract.lower()
        self.poll_seconds = poll_seconds
        self.reconnect_seconds = reconnect_seconds
        self._last_key: tuple[int, int] | None = None  # newest log delivered
        # Every block up to here has been read; None until the chain is first reached (then: its head,
        # since a role reads the ledger's state itself when it starts).
        self._scanned_to: int | None = None if from_block is None else from_block - 1
        self._cond = threading.Condition()
        self._seen = 0  # logs delivered so far; waiters compare against it
        self._callbacks: list[LogCallback] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: Any = None
        self.streaming = False  # True while a WebSocket subscription is live
        self.catch_ups = 0  # how many times logs were read back from the ledger after (re)subscribing

    @classmethod
    def for_ledger(cls, ledger: LedgerClient, **options: Any) -> LedgerEventSource | None:
        """A source for ``ledger``'s contract at its RPC endpoint (None if it has no HTTP(S) endpoint)."""
        endpoint = str(getattr(ledger.w3.provider, "endpoint_uri", "") or "")
        if not endpoint.startswith(("http://", "https://")):
            return None
        return cls(endpoint, ledger.address, **options)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> LedgerEventSource:
        if self._thread is not None:
            raise EventStreamError("the event source is already running")
        with contextlib.suppress(Exception):  # an unreachable chain is not an error at start: the thread retries
            self._start_at_head()
        self._thread = threading.Thread(target=self._run, name="ledger-events", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.drop_stream()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._cond:
            self._cond.notify_all()

    def __enter__(self) -> LedgerEventSource:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def drop_stream(self) -> None:
        """Close the live WebSocket (as a network failure would); the thread reconnects and catches up."""
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(Exception):  # already broken is as good as closed
                sock.close()

    # ------------------------------------------------------------------ what roles use

    def on_log(self, callback: LogCallback) -> None:
        """Call ``callback(raw_log)`` for every new log of the contract, in chain order, once each."""
        self._callbacks.append(callback)

    @property
    def seen(self) -> int:
        """How many logs have been delivered; pass it to :meth:`wait_for_log` to wait for the next one."""
        with self._cond:
            return self._seen

    def wait_for_log(self, seen: int, timeout: float) -> bool:
        """Block until more than ``seen`` logs were delivered (True) or ``timeout`` passed (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seen <= seen and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self._seen > seen

    def wait_for(self, predicate: Callable[[], bool], timeout: float, recheck_seconds: float = 5.0) -> bool:
        """Block until ``predicate()`` holds; it is re-evaluated at every new log (and every
        ``recheck_seconds`` as a safety net). Returns its last value when ``timeout`` runs out."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self.seen
            if predicate():
                return True
            left = deadline - time.monotonic()
            if left <= 0 or self._stop.is_set():
                return False
            self.wait_for_log(seen, min(left, recheck_seconds))

    # ------------------------------------------------------------------ the background thread

    def _run(self) -> None:
        delay = self.reconnect_seconds
        while not self._stop.is_set():
            if self.ws_url is not None:
                try:
                    self._stream()
                except Exception as exc:  # any failure: fall back, catch up, retry
                    if not self._stop.is_set() and delay == self.reconnect_seconds:  # say it once per outage
                        log.info("ledger event stream down (%s); polling the ledger meanwhile", type(exc).__name__)
                if self.catch_ups and self.streaming:
                    delay = self.reconnect_seconds  # it was up: retry soon
                else:
                    delay = min(delay * 2, MAX_RECONNECT_SECONDS)  # never came up: back off
                self.streaming = False
                self._socket = None
            self._poll_until(time.monotonic() + (delay if self.ws_url else 3600.0))

    def _poll_until(self, until: float) -> None:
        """The HTTP fallback: read new logs every ``poll_seconds`` until ``until`` (or stop)."""
        while not self._stop.is_set() and time.monotonic() < until:
            try:
                self._catch_up()
            except Exception as exc:  # the endpoint is away; try again
                log.debug("ledger log poll failed: %s", type(exc).__name__)
            self._stop.wait(self.poll_seconds)

    def _stream(self) -> None:
        from websockets.sync.client import connect

        assert self.ws_url is not None
        with connect(self.ws_url, open_timeout=HANDSHAKE_TIMEOUT_SECONDS, max_size=2**24) as sock:
            self._socket = sock
            sock.send(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "eth_subscribe",
                        "params": ["logs", {"address": self.contract}],
                    }
                )
            )
            reply = json.loads(sock.recv(timeout=HANDSHAKE_TIMEOUT_SECONDS))
            if "result" not in reply:
                raise EventStreamError(f"eth_subscribe refused: {reply.get('error')}")
            self.streaming = True
            # Subscribed first, then read back: nothing falls in the gap between the two.
            self._catch_up()
            self.catch_ups += 1
            while not self._stop.is_set():
                message = json.loads(sock.recv())
                if message.get("method") == "eth_subscription":
                    entry = message["params"]["result"]
                    if not entry.get("removed"):
                        self._deliver([entry])

    def _catch_up(self) -> None:
        """Read every log from the first unread block to the chain head and deliver the new ones."""
        if self._scanned_to is None:
            self._start_at_head()
            return
        head = self._block_number()
        if head <= self._scanned_to:
            return
        logs = rpc_request(
            self.rpc_url,
            "eth_getLogs",
            [{"address": self.contract, "fromBlock": hex(self._scanned_to + 1), "toBlock": hex(head)}],
        )
        if not isinstance(logs, list):
            raise EventStreamError("eth_getLogs answered something other than a list")
        self._deliver(logs)
        self._scanned_to = max(self._scanned_to, head)

    def _deliver(self, entries: list[dict[str, Any]]) -> None:
        fresh = []
        with self._cond:
            for entry in sorted(entries, key=_log_key):
                key = _log_key(entry)
                if self._last_key is not None and key <= self._last_key:
                    continue  # already delivered (the stream and a catch-up overlap)
                self._last_key = key
                fresh.append(entry)
            self._seen += len(fresh)
            self._cond.notify_all()
        for entry in fresh:
            for callback in self._callbacks:
                try:
                    callback(entry)
                except Exception:  # a listener's bug must not stop the stream
                    log.exception("ledger event listener failed")

    def _start_at_head(self) -> None:
        if self._scanned_to is None:
            self._scanned_to = self._block_number()

    def _block_number(self) -> int:
        return int(str(rpc_request(self.rpc_url, "eth_blockNumber")), 16)
