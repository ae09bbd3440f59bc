"""Which EIP-712 approvals the aggregator takes: exactly those the contract will accept now.

The contract counts an approval only if it is a 65-byte low-s secp256k1 signature (v 27 or 28)
that recovers, over the digest of the exact record at the current post nonce, to an institution
active on chain. Checking all of that when the approval arrives (roster, nonce and k read from the
chain, never from static files) means one member cannot slip in an approval that makes the post
revert.
"""

from __future__ import annotations

from fedledger.chain.approvals import GlobalModelRecord, global_model_typed_data, recover_signer
from fedledger.chain.client import LedgerClient
from fedledger.errors import FedLedgerError
from fedledger.protocol import RoundRecord

APPROVAL_LENGTH = 65
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_LOW_S = SECP256K1_N // 2


class ApprovalRefused(FedLedgerError):
    """An approval the contract would reject; the message says why."""


def check_approval_encoding(approval: bytes) -> None:
    """Raise ApprovalRefused unless ``approval`` is r || s || v as the contract's ecrecover check wants."""
    if len(approval) != APPROVAL_LENGTH:
        raise ApprovalRefused(f"an approval is {APPROVAL_LENGTH} bytes (r || s || v), got {len(approval)}")
    r = int.from_bytes(approval[:32], "big")
    s = int.from_bytes(approval[32:64], "big")
    v = approval[64]
    if not 0 < r < SECP256K1_N or s == 0:
        raise ApprovalRefused("approval r or s is out of range")
    if s > MAX_LOW_S:
        raise ApprovalRefused("approval has a high s (the contract accepts only s <= n/2)")
    if v not in (27, 28):
        raise ApprovalRefused(f"approval v must be 27 or 28, got {v}")


class ChainApprovals:
    """Checks approvals of one round record against the ledger as it is at the moment of the check."""

    def __init__(self, ledger: LedgerClient, record: RoundRecord) -> None:
        self.ledger = ledger
        self.record = record

    def signer_of(self, signature_der: bytes, approval: bytes) -> str:
        """The active institution that approved the record signed by ``signature_der``; else ApprovalRefused."""
        check_approval_encoding(approval)
        typed = global_model_typed_data(
            self.ledger.domain,
            GlobalModelRecord.from_round_record(self.record, signature_der),
            self.ledger.nonces().global_model,
        )
        try:
            address = recover_signer(typed, approval)
        except Exception as exc:  # eth-account raises several types for unrecoverable signatures
            raise ApprovalRefused(f"approval does not recover to any address: {type(exc).__name__}") from None
        if not self.is_active(address):
            raise ApprovalRefused(
                f"approval recovers to {address}, which is not an active institution on the ledger now "
                "(a removed member or an outsider, or an approval of another record or nonce)"
            )
        return address

    def is_active(self, address: str) -> bool:
        return self.ledger.institution(address).active

    def required(self) -> int:
        """How many approvals the contract wants now (k on chain)."""
        return self.ledger.threshold()
