"""A change counter for the signing sessions, so nobody has to poll to learn that one moved.

The board keeps two: one bumped when a session is published or changes phase, which nodes long-poll
over the aggregator's API (``GET /sessions/changes?since=V``, keeping their connections outbound-only),
and one bumped at every accepted post, on which the round driver blocks between ticks.
The version says only *that* something changed; the session itself is still read with
``GET /rounds/{r}/session``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time

MAX_LONG_POLL_SECONDS = 25.0  # below the nodes' HTTP timeout, so a quiet long-poll is not an error


class SessionFeed:
    """A monotonically increasing version with blocking (threads) and awaitable (API) waits.

    ``feed_id`` is new in every aggregator process: a node holding a version from a previous run
    (the aggregator restarted) is answered at once instead of waiting for a version that may never come.
    ``close()`` ends every long-poll (the aggregator is shutting down and must not wait for them).
    """

    def __init__(self) -> None:
        self.feed_id = secrets.token_hex(8)
        self.closed = False
        self._version = 0
        self._cond = threading.Condition()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[int]]] = []

    @property
    def version(self) -> int:
        with self._cond:
            return self._version

    def close(self) -> None:
        """Answer every pending and future long-poll at once (shutdown)."""
        with self._cond:
            self.closed = True
        self.bump()

    def bump(self) -> int:
        """Record one change and wake every waiter; returns the new version."""
        with self._cond:
            self._version += 1
            version = self._version
            waiters, self._waiters = self._waiters, []
            self._cond.notify_all()
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_resolve, future, version)
        return version

    def wait(self, since: int, timeout: float) -> int:
        """Block until the version passes ``since`` or ``timeout`` runs out; returns the version."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._version <= since:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._version

    async def wait_async(self, since: int, timeout: float, feed_id: str = "") -> int:
        """The same wait for an event loop (the API's long-poll), holding no thread while it waits.

        Answers at once when ``feed_id`` is not this feed's (the caller's ``since`` means nothing here).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        with self._cond:
            if self._version > since or self.closed or feed_id != self.feed_id:
                return self._version
            self._waiters.append((loop, future))
        try:
            return await asyncio.wait_for(future, timeout=min(timeout, MAX_LONG_POLL_SECONDS))
        except TimeoutError:
            return self.version
        finally:
            with self._cond, contextlib.suppress(ValueError):
                self._waiters.remove((loop, future))


def _resolve(future: asyncio.Future[int], version: int) -> None:
    if not future.done():
        future.set_result(version)
