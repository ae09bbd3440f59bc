"""Checks a role runs against the chain before it relies on it, so a wrong URL, contract or key is
one line at once instead of a traceback or a silent wait later.

Each check names what it found and the fix. The probe uses a short timeout and no retries: an
unreachable URL answers in seconds, and the message says which URL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fedledger.errors import FedLedgerError

if TYPE_CHECKING:
    from fedledger.chain.client import Institution, LedgerClient

PROBE_TIMEOUT_SECONDS = 5.0


class PreflightError(FedLedgerError):
    """The chain, the contract or an account is not what the configuration says; says what to fix."""


def probe_ledger(rpc_url: str, contract: str, timeout: float = PROBE_TIMEOUT_SECONDS) -> LedgerClient:
    """A client of ``contract`` on ``rpc_url`` once the chain answered and the address holds the ledger."""
    from fedledger.chain.client import LedgerClient, web3_over_http
    from fedledger.chain.compiler import compile_ledger

    w3 = web3_over_http(rpc_url, timeout, exception_retry_configuration=None)
    ledger = LedgerClient(w3, contract, compile_ledger().abi)
    check_ledger(ledger, rpc_url)
    return ledger


def check_ledger(ledger: LedgerClient, rpc_url: str) -> int:
    """The chain at ``rpc_url`` answers and ``ledger.address`` holds a FederatedLedger; its chain id."""
    from eth_account._utils.encode_typed_data.encoding_and_hashing import hash_domain

    try:
        chain_id = ledger.chain_id
        code = bytes(ledger.w3.eth.get_code(ledger.address))
    except Exception as exc:  # any transport failure: the URL is what the user can fix
        raise PreflightError(
            f"cannot reach the chain at {rpc_url} ({type(exc).__name__}): start it or fix --rpc-url"
        ) from None
    if not code:
        raise PreflightError(
            f"no contract code at {ledger.address} on chain {chain_id} ({rpc_url}): an account without code "
            "or a chain that lost its state; give the FederatedLedger's address (`fedledger chain status`)"
        )
    try:
        is_ledger = ledger.domain_separator() == hash_domain(ledger.domain.as_dict())
    except Exception:  # a contract without domainSeparator(), or one that reverts: not the ledger
        is_ledger = False
    if not is_ledger:
        raise PreflightError(
            f"the contract at {ledger.address} on chain {chain_id} is not a FederatedLedger: "
            "give the ledger's address (`fedledger chain status`)"
        )
    return chain_id


def registered_institution(ledger: LedgerClient, address: str, sm9_identity: str) -> Institution:
    """The ledger's record of ``address`` once it is the active institution registered as ``sm9_identity``."""
    owner = ledger.sm9_id_owner(sm9_identity)
    found = ledger.institution(address)
    if owner is not None and owner.lower() != address.lower():
        raise PreflightError(
            f"Ethereum key {address} is not {sm9_identity}'s registered address on ledger {ledger.address} "
            f"(that is {owner}): pass {sm9_identity}'s key with --eth-key"
        )
    if not found.registered or found.sm9_id != sm9_identity:
        registered_as = f"registered as {found.sm9_id}" if found.registered else "not registered"
        raise PreflightError(
            f"Ethereum key {address} is {registered_as} on ledger {ledger.address}, not as {sm9_identity}: "
            "pass this institution's registered key with --eth-key, or have the consortium add it first"
        )
    if not found.active:
        raise PreflightError(
            f"{sm9_identity} ({address}) is not an active institution of ledger {ledger.address} (it was removed): "
            "the consortium must add it again"
        )
    return found


def check_aggregator_role(ledger: LedgerClient, address: str) -> None:
    """``address`` holds the ledger's aggregator role."""
    holder = ledger.aggregator()
    if holder.lower() != address.lower():
        raise PreflightError(
            f"Ethereum key {address} is not the aggregator of ledger {ledger.address} (that is {holder}): "
            "pass the aggregator's key with --eth-key, or have the consortium set this address as aggregator"
        )
