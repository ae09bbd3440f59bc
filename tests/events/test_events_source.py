"""The ledger event source on a real Anvil: pushed logs, a killed WebSocket caught up from the
ledger, the HTTP-only fallback, and ``wait_for`` waking on the event rather than a timer."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from demo.tcp_relay import TcpRelay
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.events import EventStreamError, LedgerEventSource, websocket_url
from fedledger.chain.localchain import LocalChain
from fedledger.digests import sm3

CID0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
SIG = bytes(range(1, 105))


def _until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def _submit(ledger: LedgerClient, roles: DevRoles, i: int) -> str:
    tx = ledger.submit_update(
        roles.institutions[i], 0, f"QmUpdate{i}", sm3(b"u%d" % i), sm3(b"m%d" % i), 10, 500_000, SIG
    )
    return tx.tx_hash


@pytest.fixture
def cutter(anvil_chain: LocalChain) -> Iterator[TcpRelay]:
    assert anvil_chain.port is not None
    relay = TcpRelay(anvil_chain.port)
    yield relay
    relay.close()


def test_websocket_url_follows_the_rpc_scheme() -> None:
    assert websocket_url("http://127.0.0.1:8545") == "ws://127.0.0.1:8545"
    assert websocket_url("https://rpc.example/v1") == "wss://rpc.example/v1"
    with pytest.raises(EventStreamError, match="cannot derive"):
        websocket_url("ftp://x")


def test_a_killed_stream_is_caught_up_from_the_ledger(
    ledger: LedgerClient, dev_accounts: DevRoles, cutter: TcpRelay
) -> None:
    received: list[dict[str, Any]] = []
    url = f"http://127.0.0.1:{cutter.port}"
    with LedgerEventSource(url, ledger.address, poll_seconds=0.05, reconnect_seconds=0.2) as source:
        source.on_log(received.append)
        assert _until(lambda: source.streaming), "no WebSocket subscription"
        seen = source.seen
        opened = ledger.open_round(dev_accounts.aggregator, 0, CID0, sm3(b"base"))
        assert source.wait_for_log(seen, timeout=5.0)
        assert received[-1]["transactionHash"] == opened.tx_hash

        cutter.refusing.set()  # the network goes away: the live stream dies, reconnects are refused
        cutter.cut()
        assert _until(lambda: not source.streaming), "the stream did not notice it was cut"
        missed = [_submit(ledger, dev_accounts, i) for i in range(2)]
        time.sleep(0.5)
        assert [e["transactionHash"] for e in received] == [opened.tx_hash]  # nothing got through

        cutter.refusing.clear()
        assert _until(lambda: len(received) == 3), "the missed events were not caught up"
        assert [e["transactionHash"] for e in received] == [opened.tx_hash, *missed]  # in order, once each
        # streaming is set on subscribing, the count after the read-back that follows: wait for both
        assert _until(lambda: source.streaming and source.catch_ups >= 2), "the stream was not re-established"

        seen = source.seen  # and the re-established stream pushes again
        again = _submit(ledger, dev_accounts, 2)
        assert source.wait_for_log(seen, timeout=5.0)
        assert [e["transactionHash"] for e in received] == [opened.tx_hash, *missed, again]


def test_http_only_endpoint_falls_back_to_polling(
    ledger: LedgerClient, dev_accounts: DevRoles, anvil_chain: LocalChain
) -> None:
    with LedgerEventSource(anvil_chain.rpc_url, ledger.address, use_websocket=False, poll_seconds=0.05) as source:
        seen = source.seen
        ledger.open_round(dev_accounts.aggregator, 0, CID0, sm3(b"base"))
        assert source.wait_for_log(seen, timeout=5.0)
        assert not source.streaming


def test_wait_for_wakes_on_the_event_not_the_recheck_timer(
    ledger: LedgerClient, dev_accounts: DevRoles, anvil_chain: LocalChain
) -> None:
    with LedgerEventSource(anvil_chain.rpc_url, ledger.address) as source:
        assert _until(lambda: source.streaming)
        timer = threading.Timer(0.3, lambda: ledger.open_round(dev_accounts.aggregator, 0, CID0, sm3(b"base")))
        timer.start()
        start = time.monotonic()
        assert source.wait_for(lambda: ledger.round_state().started, timeout=20.0, recheck_seconds=10.0)
        assert time.monotonic() - start < 3.0  # not the 10 s recheck
        assert not source.wait_for(lambda: False, timeout=0.2)


def test_a_chain_out_of_reach_at_start_is_not_an_error(
    ledger: LedgerClient, dev_accounts: DevRoles, cutter: TcpRelay
) -> None:
    cutter.refusing.set()
    url = f"http://127.0.0.1:{cutter.port}"
    with LedgerEventSource(url, ledger.address, poll_seconds=0.05, reconnect_seconds=0.2) as source:
        time.sleep(0.3)
        assert not source.streaming
        cutter.refusing.clear()
        assert _until(lambda: source.streaming, timeout=15.0), "never connected once the chain was back"
        seen = source.seen
        ledger.open_round(dev_accounts.aggregator, 0, CID0, sm3(b"base"))
        assert source.wait_for_log(seen, timeout=5.0)
