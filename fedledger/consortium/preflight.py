"""Checks a role runs once at start, so a wrong chain, contract or key is said at once, not waited on."""

from __future__ import annotations

import logging
from pathlib import Path

from fedledger.chain.client import LedgerClient
from fedledger.envelope import RecipientKeys
from fedledger.errors import FedLedgerError
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.errors import NoReaderCard
from fedledger.protocol.readers import reader_card

log = logging.getLogger(__name__)


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


def check_sealing(
    consortium: Consortium, keys: RecipientKeys | None, identity: str, keys_file: Path, unsealed: bool
) -> None:
    """The party can open what the federation seals to it: its kit's reader keys are the ones the
    roster files under ``identity``. A roster that publishes no encryption key (a kit provisioned
    before sealing) runs with plaintext model files, and only when the operator said ``--unsealed``."""
    if not consortium.encrypt_master_public:
        if not unsealed:
            raise NotReady(
                "this kit's roster publishes no SM9 encryption key, so model files would enter the store "
                "in plaintext: provision the kits again, or start with --unsealed to run it unsealed"
            )
        log.warning("running unsealed (--unsealed): model files enter the store in plaintext")
        return
    if keys is None:
        raise NotReady(
            f"{keys_file} is missing: the consortium seals every model file and {identity} could open none; "
            "ask the KGC for the kit again (`consortium provision`, or a re-issue by add-member/remove-member)"
        )
    try:
        card = reader_card(consortium, identity)
    except NoReaderCard as exc:
        raise NotReady(f"{exc}: ask the KGC to re-issue the kits") from None
    if card.key_id != keys.public.key_id or card.identity != keys.identity:
        raise NotReady(
            f"{keys_file} is not the key the roster names for {identity} (ML-KEM key id {card.key_id.hex()}): "
            "install the kit's own reader-keys.json or have the KGC register its card"
        )
