"""Event reads share one scan of the contract's logs: a repeated read of the same round, or of another
event or filter, reads only the blocks mined since the last read of any."""

from __future__ import annotations

from typing import Any

from web3 import HTTPProvider, Web3

from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.digests import sm3

CID0 = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
SIG = bytes(range(1, 105))


class RecordingProvider(HTTPProvider):
    """A real HTTP provider that also notes the block range of every eth_getLogs it sends."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.ranges: list[tuple[int, int]] = []

    def make_request(self, method: Any, params: Any) -> Any:
        if method == "eth_getLogs":
            self.ranges.append((int(params[0]["fromBlock"], 16), int(params[0]["toBlock"], 16)))
        return super().make_request(method, params)


def _submit(ledger: LedgerClient, roles: DevRoles, i: int) -> None:
    ledger.submit_update(roles.institutions[i], 0, f"QmU{i}", sm3(b"u%d" % i), sm3(b"m%d" % i), 10, 500_000, SIG)


def test_a_repeated_read_scans_only_new_blocks_and_misses_nothing(
    ledger_deployment: Deployment, dev_accounts: DevRoles
) -> None:
    provider = RecordingProvider(ledger_deployment.rpc_url)
    ledger = ledger_deployment.client(Web3(provider))
    ranges = provider.ranges
    ledger.open_round(dev_accounts.aggregator, 0, CID0, sm3(b"base"))
    _submit(ledger, dev_accounts, 0)
    first = ledger.updates_submitted(round=0)
    assert len(first) == 1 and ranges[0][0] == ledger.from_block
    scanned_to = ranges[-1][1]

    ranges.clear()
    assert ledger.updates_submitted(round=0) == first
    assert ranges == []  # no block mined since: nothing read again

    _submit(ledger, dev_accounts, 1)
    again = ledger.updates_submitted(round=0)
    assert [e.institution for e in again] == [dev_accounts.institutions[i].address for i in (0, 1)]
    assert ranges and all(start > scanned_to for start, _ in ranges)  # only the new blocks

    ranges.clear()  # other events and filters come from the same scan; an explicit range is read as asked
    assert ledger.updates_submitted(round=1) == []
    assert [e.round for e in ledger.rounds_opened()] == [0]
    assert [e.institution for e in ledger.updates_submitted(institution=dev_accounts.institutions[1].address)] == [
        dev_accounts.institutions[1].address
    ]
    assert ledger.access_records() == [] and ledger.global_models_posted(round=0) == []
    assert ranges == []
    ledger.record_access(dev_accounts.institutions[2], CID0, "read it")
    assert [(a.cid, a.purpose) for a in ledger.access_records(cid=CID0)] == [(CID0, "read it")]
    assert ledger.access_records(cid="QmOther") == [] and ledger.access_records(accessor=ledger.address) == []
    assert ranges and all(start > scanned_to for start, _ in ranges)
    ranges.clear()
    assert len(ledger.updates_submitted(round=0, from_block=ledger.from_block)) == 2
    assert ranges and ranges[0][0] == ledger.from_block


def test_after_a_rollback_the_rolled_back_entries_are_gone_from_every_later_read(
    ledger_deployment: Deployment, dev_accounts: DevRoles
) -> None:
    provider = RecordingProvider(ledger_deployment.rpc_url)
    ledger = ledger_deployment.client(Web3(provider))
    ledger.open_round(dev_accounts.aggregator, 0, CID0, sm3(b"base"))
    snapshot = ledger.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    _submit(ledger, dev_accounts, 0)
    assert len(ledger.updates_submitted(round=0)) == 1
    ledger.w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    assert ledger.updates_submitted(round=0) == []
    for i in (1, 2):  # the chain grows past where the rolled-back read had reached
        _submit(ledger, dev_accounts, i)
    assert [e.institution for e in ledger.updates_submitted(round=0)] == [
        dev_accounts.institutions[i].address for i in (1, 2)
    ]
