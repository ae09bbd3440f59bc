"""The aggregator's HTTP API: where nodes find the current signing session and post to it.

Nodes only ever call out to the aggregator (hospitals rarely accept inbound connections), so the
protocol is: GET the session, POST commitments, partials and approvals, and long-poll
``/sessions/changes`` to learn the moment a session moves (polling is only the fallback). Every POST is
authenticated (EIP-191 by the member's Ethereum key, or the EIP-712 approval itself) before its
payload is decoded, and checked by the session; refusals come back as 403/409/422 with a JSON
message. Bodies over 64 KiB get 413 and a client over its request rate 429 (``request_limits``).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from pydantic import BaseModel, Field

from aggregator.client_binding import ClientBinding
from aggregator.request_limits import BodySizeLimit, RateLimit, RequestLimits
from aggregator.secagg_board import SecureBoard, add_secure_routes
from aggregator.session_feed import MAX_LONG_POLL_SECONDS, SessionFeed
from aggregator.signing import SessionRejected, SigningSession
from fedledger.consortium.metrics import MetricBoard, MetricRejected, per_round, verify
from fedledger.httpdocs import offline_docs_app

MAX_AUTH_CHARS = 200  # a 65-byte signature in hex with 0x is 132


class SignedBody(BaseModel):
    payload: dict[str, Any] = Field(description="commitment or partial signature (SM9 module encoding)")
    auth: str = Field(
        max_length=MAX_AUTH_CHARS, description="EIP-191 signature of the payload by the member's Ethereum key"
    )


class ApprovalBody(BaseModel):
    approval: str = Field(max_length=MAX_AUTH_CHARS, description="65-byte EIP-712 GlobalModel approval, hex")


class SessionBoard:
    """Holds the current session per round (and the last status), shared with the round driver."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[int, SigningSession] = {}
        self.status: dict[str, Any] = {"state": "starting"}
        self.metrics: MetricBoard | None = None  # sites' signed per-round metrics (``aggregator start``)
        self.feed = SessionFeed()  # bumped when a session is published or changes phase; nodes long-poll it
        self.arrivals = SessionFeed()  # bumped at every accepted post; the round driver sleeps on it
        self.secure: SecureBoard | None = None  # secure-aggregation rounds (``secure_aggregation`` on)

    def publish(self, session: SigningSession) -> None:
        with self._lock:
            self._sessions[session.record.round] = session
        self.feed.bump()

    def get(self, round_index: int) -> SigningSession:
        with self._lock:
            session = self._sessions.get(round_index)
        if session is None:
            raise HTTPException(404, f"no signing session for round {round_index} yet")
        return session

    def checked(self, round_index: int, session_id: str) -> SigningSession:
        session = self.get(round_index)
        if session.session_id != session_id:
            raise HTTPException(409, f"session {session_id} is over; the current one is {session.session_id}")
        return session


def create_app(
    board: SessionBoard, binding: ClientBinding | None = None, limits: RequestLimits | None = None
) -> FastAPI:
    """The API over ``board``; with ``binding`` (mutual TLS) signed posts must match the client certificate.

    ``limits`` (default: 64 KiB bodies, 200 requests/s per client) are enforced before any handler runs.
    """
    limits = limits or RequestLimits()
    app = offline_docs_app(title="fedledger aggregator", version="1", description=__doc__)
    app.add_middleware(BodySizeLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(RateLimit, per_second=limits.rate_per_second, burst=limits.rate_burst)  # outermost

    def _bound(request: Request, body: Any) -> None:
        if binding is not None:
            binding.check(request.scope, body.payload, body.auth)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, **board.status}

    @app.post("/rounds/{round_index}/metrics")
    def post_metric(round_index: int, body: SignedBody, request: Request) -> dict[str, Any]:
        _bound(request, body)
        if board.metrics is None:
            raise HTTPException(503, "this aggregator keeps no metrics (start it from a kit)")
        if body.payload.get("round") != round_index:
            raise HTTPException(422, "the report names another round")
        try:
            board.metrics.add({"payload": body.payload, "auth": body.auth})
        except MetricRejected as exc:
            raise HTTPException(422, str(exc)) from None
        return {"accepted": True}

    @app.get("/metrics")
    def metrics() -> dict[str, Any]:
        """Every site's signed report, and per round the sample-weighted federated value."""
        if board.metrics is None:
            return {"reports": [], "rounds": []}
        bodies = board.metrics.bodies()
        return {"reports": bodies, "rounds": per_round([verify(b, board.metrics.roster) for b in bodies])}

    @app.get("/rounds/{round_index}/session")
    def session(round_index: int) -> dict[str, Any]:
        return board.get(round_index).describe()

    @app.get("/sessions/changes")
    async def session_changes(
        since: int = Query(0, ge=0, description="the version the caller last saw"),
        feed: str = Query("", max_length=64, description="the feed id that version came from"),
        wait: float = Query(MAX_LONG_POLL_SECONDS, ge=0, le=MAX_LONG_POLL_SECONDS, description="seconds to hold"),
    ) -> dict[str, Any]:
        """Long-poll: answers as soon as any signing session changes after ``since`` (or after ``wait``)."""
        version = await board.feed.wait_async(since, wait, feed)
        return {"version": version, "feed": board.feed.feed_id, "open": not board.feed.closed}

    def _apply(action: Any) -> dict[str, Any]:
        try:
            action()
        except SessionRejected as exc:
            raise HTTPException(exc.status_code, str(exc)) from None
        board.arrivals.bump()  # wakes the round driver, which advances the phase (and then tells the nodes)
        return {"accepted": True}

    @app.post("/rounds/{round_index}/sessions/{session_id}/commitments")
    def commit(round_index: int, session_id: str, body: SignedBody, request: Request) -> dict[str, Any]:
        _bound(request, body)
        s = board.checked(round_index, session_id)
        return _apply(lambda: s.add_commitment(body.payload, body.auth))

    @app.post("/rounds/{round_index}/sessions/{session_id}/partials")
    def partial(round_index: int, session_id: str, body: SignedBody, request: Request) -> dict[str, Any]:
        _bound(request, body)
        s = board.checked(round_index, session_id)
        return _apply(lambda: s.add_partial(body.payload, body.auth))

    @app.post("/rounds/{round_index}/sessions/{session_id}/approvals")
    def approve(round_index: int, session_id: str, body: ApprovalBody) -> dict[str, Any]:
        s = board.checked(round_index, session_id)
        return _apply(lambda: s.add_approval(body.approval))

    add_secure_routes(app, board, _bound, board.arrivals.bump)
    return app
