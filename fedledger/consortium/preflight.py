"""Checks a role runs once at start, so a wrong chain, contract or key is said at once, not waited on."""

from __future__ import annotations

from fedledger.chain.client import LedgerClient
from fedledger.errors import FedLedgerError


class NotReady(FedLedgerError):
    """The party cannot take part as configured; the message says why and what to do."""


def check_ledger(ledger: LedgerClient, chain_id: int, rpc_url: str) -> None:
    """The RPC URL is the plan's chain and the address holds a FederatedLedger."""
    try:
        actual = ledger.chain_id
    except Exception as exc:
        raise NotReady(f"cannot reach the chain at {rpc_url} ({type(exc).__name__}): is it up?") from None
    if actual != chain_id:
        raise NotReady(f"{rpc_url} is chain {actual}, the kit belongs to chain {chain_id}: check the RPC URL")
    if not ledger.w3.eth.get_code(ledger.address):
        raise NotReady(
            f"no contract at {ledger.address} on {rpc_url}: deploy it (`fedledger chain deploy --plan`) "
            "or check the kit's chain"
        )
    try:
        ledger.round_state()
        ledger.threshold()
    except Exception:
        raise NotReady(f"the contract at {ledger.address} is not a FederatedLedger: check the kit's contract") from None


def check_member(ledger: LedgerClient, address: str, name: str) -> None:
    """The node's account is an active institution of the ledger."""
    if not ledger.institution(address).active:
        raise NotReady(
            f"{name} ({address}) is not an active member of ledger {ledger.address}: "
            "the consortium adds it with `fedledger consortium add-member`"
        )


def check_aggregator(ledger: LedgerClient, address: str) -> None:
    """The aggregator's account holds the ledger's aggregator role."""
    holder = ledger.aggregator()
    if holder.lower() != address.lower():
        raise NotReady(f"this kit's account {address} is not the aggregator of ledger {ledger.address} ({holder})")
