"""While a record is being signed, the aggregator notices an entry that lands (signers would refuse
the record) by the pushed log, reading the count from the chain only when a log arrived."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from aggregator.driver import EntriesChanged, EntryCountWatch
from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.events import LedgerEventSource
from fedledger.digests import sm3
from tests.support.counting_rpc import counting_relay

SIG = bytes(range(1, 105))


def _submit(ledger: LedgerClient, roles: DevRoles, i: int) -> None:
    ledger.submit_update(roles.institutions[i], 0, f"QmU{i}", sm3(b"u%d" % i), sm3(b"m"), 10, 500_000, SIG)


def test_a_landing_entry_stops_the_signing_and_quiet_looks_ask_the_chain_nothing(
    ledger_deployment: Deployment, dev_accounts: DevRoles
) -> None:
    with counting_relay(ledger_deployment.rpc_url) as (url, relay):
        ledger = LedgerClient.connect(url, ledger_deployment.address, ledger_deployment.abi)
        ledger.open_round(dev_accounts.aggregator, 0, "QmBase", sm3(b"base"))
        _submit(ledger, dev_accounts, 0)
        with LedgerEventSource(ledger_deployment.rpc_url, ledger.address) as source:  # WebSocket: not relayed
            assert source.wait_for(lambda: source.streaming and source.catch_ups > 0, 30)
            watch = EntryCountWatch(SimpleNamespace(events=source, ledger=ledger), SimpleNamespace(entry_count=1))  # type: ignore[arg-type]
            watch.check()
            relay.methods.clear()
            for _ in range(5):  # nodes' posts arrive; no log: the count is not read again
                watch.check()
            assert relay.methods["eth_call"] == 0
            seen = source.seen
            _submit(ledger, dev_accounts, 1)
            assert source.wait_for_log(seen, 30)
            with pytest.raises(EntriesChanged, match="now has 2 entries"):
                watch.check()
        watch = EntryCountWatch(SimpleNamespace(events=None, ledger=ledger), SimpleNamespace(entry_count=2))  # type: ignore[arg-type]
        relay.methods.clear()
        watch.check()
        watch.check()  # no event stream: every look reads the chain
        assert relay.methods["eth_call"] == 2
