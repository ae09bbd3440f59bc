"""A role's ledger client asks the chain only what it needs: the chain id once, the roster in one call.

Every request costs a role CPU time (web3's request stack) and, with several roles in one process, a
turn at the interpreter lock; a round used to send hundreds of ``eth_chainId`` and one
``institution()`` call per member each time a role wanted the roster.
"""

from __future__ import annotations

import pytest

from fedledger.chain.client import LedgerClient
from fedledger.chain.deploy import Deployment
from fedledger.chain.devaccounts import DevRoles
from fedledger.chain.errors import RoundStillOpen
from fedledger.digests import sm3
from tests.support.counting_rpc import counting_relay


def test_a_connected_client_asks_the_chain_id_once(ledger_deployment: Deployment, dev_accounts: DevRoles) -> None:
    with counting_relay(ledger_deployment.rpc_url) as (url, relay):
        ledger = LedgerClient.connect(url, ledger_deployment.address, ledger_deployment.abi)
        for _ in range(5):
            assert not ledger.round_state().started
        ledger.open_round(dev_accounts.aggregator, 0, "QmBase", sm3(b"base"))
        assert ledger.round_state().open
        ledger.institutions()
    assert relay.methods["eth_call"] >= 7 and relay.methods["eth_sendRawTransaction"] == 1
    assert relay.methods["eth_chainId"] <= 1


def test_the_roster_is_one_call_and_says_what_institutions_says(
    ledger_deployment: Deployment, dev_accounts: DevRoles
) -> None:
    with counting_relay(ledger_deployment.rpc_url) as (url, relay):
        ledger = LedgerClient.connect(url, ledger_deployment.address, ledger_deployment.abi)
        ledger.chain_id  # noqa: B018 (a property with an RPC behind it: asked before counting)
        relay.methods.clear()
        roster = ledger.roster()
        assert relay.methods["eth_call"] == 1
        full = ledger.institutions()
        active = ledger.active_institutions()
    assert [(m.address, m.sm9_id, m.active) for m in roster] == [(i.address, i.sm9_id, i.active) for i in full]
    assert [m.address for m in roster] == [a.address for a in dev_accounts.institutions]
    assert [m.sm9_id for m in active] == [m.sm9_id for m in roster if m.active]


def test_a_transaction_is_three_requests_and_a_revert_is_still_named(
    ledger_deployment: Deployment, dev_accounts: DevRoles
) -> None:
    """Nonce, gas, fees in one batch, the raw transaction, its receipt; a revert found while estimating
    is the contract's own error, as before, and nothing is sent."""
    with counting_relay(ledger_deployment.rpc_url) as (url, relay):
        ledger = LedgerClient.connect(url, ledger_deployment.address, ledger_deployment.abi)
        ledger.chain_id  # noqa: B018 (asked once, before counting)
        relay.methods.clear()
        relay.posts = 0
        mined = ledger.open_round(dev_accounts.aggregator, 0, "QmBase", sm3(b"base"))
        receipts = relay.methods["eth_getTransactionReceipt"]  # asked again only if not there at once
        assert relay.methods["eth_sendRawTransaction"] == 1 and receipts >= 1
        assert relay.posts == 2 + receipts  # one batch (nonce, gas, fees), the raw transaction, the receipt
        assert mined.gas_used > 0 and ledger.round_state().open
        relay.methods.clear()
        with pytest.raises(RoundStillOpen):
            ledger.open_round(dev_accounts.aggregator, 1, "QmBase", sm3(b"base"))
        assert relay.methods["eth_sendRawTransaction"] == 0
        assert ledger.round_state().round == 0
