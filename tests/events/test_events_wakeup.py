"""Push on the node's side, over real servers: the aggregator's session-change long-poll, and a
node whose WebSocket to the chain is killed catching up from the ledger."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
import uvicorn

from aggregator.http_api import SessionBoard, create_app
from aggregator.http_server import serve_in_background
from demo.tcp_relay import TcpRelay
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from fedledger.digests import sm3
from fedledger.netutil import free_port
from node.wakeup import NodeWakeup

CID0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
SIG = bytes(range(1, 105))


@pytest.fixture
def api() -> Iterator[tuple[str, SessionBoard]]:
    board = SessionBoard()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(board), host="127.0.0.1", port=port, log_level="warning"))
    thread = serve_in_background(server)
    yield f"http://127.0.0.1:{port}", board
    board.feed.close()
    server.should_exit = True
    thread.join(timeout=10)


def _later(seconds: float, action: object) -> None:
    threading.Timer(seconds, action).start()  # type: ignore[arg-type]


def test_long_poll_answers_at_the_change_not_at_its_timeout(api: tuple[str, SessionBoard]) -> None:
    url, board = api
    first = httpx.get(f"{url}/sessions/changes", params={"wait": 0}).json()
    assert first["open"] and first["version"] == 0
    _later(0.3, board.feed.bump)
    start = time.monotonic()
    answer = httpx.get(
        f"{url}/sessions/changes", params={"since": 0, "feed": first["feed"], "wait": 20}, timeout=30
    ).json()
    assert answer["version"] == 1
    assert 0.25 <= time.monotonic() - start < 3.0


def test_a_version_from_another_aggregator_run_is_answered_at_once(api: tuple[str, SessionBoard]) -> None:
    url, _board = api
    start = time.monotonic()
    answer = httpx.get(
        f"{url}/sessions/changes", params={"since": 57, "feed": "0123456789abcdef", "wait": 20}, timeout=30
    ).json()
    assert answer["version"] == 0 and time.monotonic() - start < 3.0


def test_closing_the_feed_ends_pending_long_polls(api: tuple[str, SessionBoard]) -> None:
    url, board = api
    feed = board.feed.feed_id
    _later(0.3, board.feed.close)
    start = time.monotonic()
    answer = httpx.get(f"{url}/sessions/changes", params={"since": 0, "feed": feed, "wait": 20}, timeout=30).json()
    assert not answer["open"] and time.monotonic() - start < 3.0


@pytest.mark.parametrize("bad", [{"since": -1}, {"wait": 1000}, {"feed": "x" * 65}])
def test_bad_long_poll_parameters_are_refused(api: tuple[str, SessionBoard], bad: dict[str, object]) -> None:
    url, board = api
    response = httpx.get(f"{url}/sessions/changes", params=bad)  # type: ignore[arg-type]
    assert response.status_code == 422
    assert board.feed.version == 0


def test_a_node_whose_event_stream_is_killed_catches_up_from_the_ledger(
    ledger: LedgerClient, dev_accounts: DevRoles, anvil_chain: object, api: tuple[str, SessionBoard]
) -> None:
    url, _board = api
    cutter = TcpRelay(anvil_chain.port)  # type: ignore[attr-defined]
    try:
        via_cutter = LedgerClient.connect(
            f"http://127.0.0.1:{cutter.port}", ledger.address, ledger.abi, from_block=ledger.from_block
        )
        ctx = SimpleNamespace(
            name="hospital-1", ledger=via_cutter, poll_interval=0.1, aggregator_url=url, aggregator_tls=None
        )
        stop = threading.Event()
        with NodeWakeup(ctx, stop) as wakeup:
            assert wakeup.ledger_events is not None
            deadline = time.monotonic() + 10
            while not wakeup.live:
                assert time.monotonic() < deadline, "the node's feeds never came up"
                time.sleep(0.05)
            wakeup.wait(0.0)  # consume the feeds' first answers

            cutter.refusing.set()  # the hospital's link to the chain drops
            cutter.cut()
            while wakeup.ledger_events.streaming:
                assert time.monotonic() < deadline + 10
                time.sleep(0.05)
            wakeup.wait(0.0)
            opened = ledger.open_round(dev_accounts.aggregator, 0, CID0, sm3(b"base"))  # missed while down
            _later(0.5, cutter.refusing.clear)
            seen_before = wakeup.ledger_events.seen
            start = time.monotonic()
            wakeup.wait(30.0)  # the node sleeps: only the caught-up event may wake it early
            assert time.monotonic() - start < 10.0
            assert wakeup.ledger_events.seen == seen_before + 1
            assert via_cutter.round_state().started  # and what it reads now is the ledger's state
            assert opened.block_number <= via_cutter.w3.eth.block_number
        stop.set()
    finally:
        cutter.close()
