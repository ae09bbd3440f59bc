"""Item 5 of issue #10: a node never dies on one bad poll, and commit/sign are idempotent per session.

The aggregator here is real (its app on a real uvicorn) or deliberately hostile (an app serving
malformed session views, 5xx and stalls); the chain is the session Anvil, the store a real local one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Response

from aggregator.http_api import SessionBoard, create_app
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from fedledger.digests import sm3_file
from fedledger.fl import Dataset, TrainConfig
from fedledger.protocol import RoundRecord
from fedledger.protocol.round_check import AggregationRule, RoundComputation
from fedledger.sm9.keys import extract_sign_key
from fedledger.store import open_store
from node.participant import NodeContext, NodeMisconfigured, SessionParticipant, run_node
from tests.support.audit_scenario import store_manifest
from tests.support.loopback_server import served
from tests.support.signing_session import BASE_DIGEST, SessionFixture, session_fixture


@pytest.fixture
def fx(ledger: LedgerClient, dev_accounts: DevRoles) -> SessionFixture:
    return session_fixture(ledger, dev_accounts)


def node_context(fx: SessionFixture, tmp_path: Path, url: str, **overrides: Any) -> NodeContext:
    """Institution 0 of ``fx`` as a node (no training data needed: it never trains here)."""
    fields: dict[str, Any] = {
        "name": "hospital-1",
        "account": fx.roles.institutions[0],
        "sm9_key": extract_sign_key(fx.master, "hospital-1"),
        "sm9_identity": "hospital-1",
        "signer": fx.signers[0],
        "threshold_public": fx.public,
        "master_public_key": fx.public.master_public_key,
        "consortium": fx.roster,
        "ledger": fx.ledger,
        "store": open_store(f"local:{tmp_path / 'store'}"),
        "aggregator_url": url,
        "width_rate": 1.0,
        "selection": "static",
        "train_data": Dataset("none", np.zeros((1, 2), np.float32), np.zeros(1, np.int64), 2),
        "train_config": TrainConfig(),
        "state_dir": tmp_path / "node",
        "verify_aggregation": False,
        "poll_interval": 0.05,
        "http_timeout_seconds": 0.5,
    }
    fields.update(overrides)
    return NodeContext(**fields)


def checkable_record(fx: SessionFixture, tmp_path: Path) -> RoundRecord:
    """A round-0 record a node's checks accept: no entries, a global model and the round's manifest
    really in the store."""
    model = tmp_path / "global.bin"
    model.write_bytes(b"a global model")
    store = open_store(f"local:{tmp_path / 'store'}")
    cid = store.put(model)
    ledger = fx.ledger
    manifest = RoundComputation([], [], {}).manifest(
        (ledger.chain_id, ledger.address), 0, BASE_DIGEST, cid, sm3_file(model), AggregationRule()
    )
    return store_manifest(store, manifest)


class LossyResponses:
    """Wraps the real aggregator app: the first POST of each kind is handled, but its response arrives
    only after the node's HTTP timeout (a lost response, as on a congested hospital link)."""

    def __init__(self, app: Any, delay: float) -> None:
        self.app, self.delay = app, delay
        self.delayed: set[str] = set()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope.get("path", "").rsplit("/", 1)[-1]
        if scope.get("type") != "http" or scope.get("method") != "POST" or kind in self.delayed:
            await self.app(scope, receive, send)
            return
        self.delayed.add(kind)

        async def late_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(self.delay)
            await send(message)

        await self.app(scope, receive, late_send)


def test_a_lost_commit_or_partial_response_is_followed_by_a_resend_not_a_crash(
    fx: SessionFixture, tmp_path: Path
) -> None:
    session = fx.new_session(checkable_record(fx, tmp_path))
    board = SessionBoard()
    board.publish(session)
    with served(LossyResponses(create_app(board), delay=1.0)) as url, httpx.Client(timeout=0.5) as http:
        node = SessionParticipant(node_context(fx, tmp_path, url), http)
        with pytest.raises(httpx.ReadTimeout):
            node.step(0)
        assert node.step(0) == "commit"  # resends the cached commitment: no "already committed"
        first = session._committed[1]
        for i in (1, 2):
            session.add_commitment(*fx.commitment(session, i))
        session.tick()
        time.sleep(0.05)
        assert session.tick() == "sign" and session._committed[1] == first
        with pytest.raises(httpx.ReadTimeout):
            node.step(0)
        assert node.step(0) == "sign"  # resends the cached partial: the nonce is never used twice
        assert 1 in session._partials


HOSTILE_VIEWS: list[tuple[Any, str]] = [
    ({}, "no valid session_id"),
    ({"session_id": "s1", "phase": ["commit"]}, "unknown phase"),
    ({"session_id": "s2", "phase": "sign", "commitments": [{"index": 1, "D": "zz"}]}, "malformed commitment"),
    ({"session_id": "s3", "phase": "approve", "signature_der": "zz"}, "threshold signature is malformed"),
    ({"session_id": "s4", "phase": "commit", "excluded": "all"}, "excluded list"),
    ({"session_id": "s5", "phase": "commit", "record": {"round": "x"}}, "malformed round record"),
    (500, "answered 500"),
    ("not json", "not JSON"),
    ("stall", "ReadTimeout"),
]


def hostile_aggregator(views: list[tuple[Any, str]]) -> tuple[FastAPI, threading.Event]:
    """Serves each view twice, then 404 (no session); sets the event once all were served."""
    app = FastAPI()
    queue = [v for v, _ in views for _ in range(2)]
    served_all = threading.Event()

    @app.get("/rounds/{round_index}/session")
    async def session(round_index: int) -> Response:
        if not queue:
            served_all.set()
            return Response(status_code=404)
        view = queue.pop(0)
        if view == "stall":
            await asyncio.sleep(1.0)
            return Response(status_code=404)
        if isinstance(view, int):
            return Response(status_code=view)
        if isinstance(view, str):
            return Response(view, media_type="application/json")
        import json

        return Response(json.dumps(view), media_type="application/json")

    return app, served_all


def _submitted(fx: SessionFixture) -> None:
    """Institution 0 has its round-0 update on the ledger, so its node goes straight to the session."""
    fx.ledger.submit_update(
        fx.roles.institutions[0], 0, "bafkreiupdate", b"\x05" * 32, b"\x06" * 32, 10, 1_000_000, b"\x07" * 64
    )


def test_a_node_survives_every_malformed_view_5xx_and_stall_and_says_each_once(
    fx: SessionFixture, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _submitted(fx)
    app, served_all = hostile_aggregator(HOSTILE_VIEWS)
    stop = threading.Event()
    outcome: list[Any] = []
    with served(app) as url, caplog.at_level(logging.ERROR, logger="node.participant"):
        ctx = node_context(fx, tmp_path, url)
        thread = threading.Thread(target=lambda: outcome.append(run_node(ctx, None, stop=stop)), daemon=True)
        thread.start()
        assert served_all.wait(60), "the node stopped polling"
        assert thread.is_alive()
        stop.set()
        thread.join(10)
    assert outcome == [0]
    messages = [r.getMessage() for r in caplog.records]
    for _, reason in HOSTILE_VIEWS:
        assert sum(reason in m for m in messages) == 1, (reason, messages)


def test_a_node_that_is_not_a_member_stops_at_once_saying_so(fx: SessionFixture, tmp_path: Path) -> None:
    ctx = node_context(fx, tmp_path, "http://127.0.0.1:9", account=fx.roles.outsider)
    started = time.monotonic()
    with pytest.raises(NodeMisconfigured, match="not an active institution"):
        run_node(ctx, None)
    assert time.monotonic() - started < 10


def test_a_node_pointed_at_no_contract_stops_at_once_saying_so(fx: SessionFixture, tmp_path: Path) -> None:
    wrong = LedgerClient(fx.ledger.w3, fx.roles.outsider.address, fx.ledger.abi)
    ctx = node_context(fx, tmp_path, "http://127.0.0.1:9", ledger=wrong)
    with pytest.raises(NodeMisconfigured, match="no contract at"):
        run_node(ctx, None)
