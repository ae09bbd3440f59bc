"""EIP-712 approvals: what an institution signs so the contract counts it towards k of n.

The typed structs mirror FederatedLedger.sol. The domain binds the chain id and the contract
address, each struct carries the contract's current nonce, and the global-model struct binds the
round, so an approval counts once, for one record, on one ledger. Signing uses eth-account's own
EIP-712 encoder, an implementation independent of the contract's hashing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from fedledger.digests import as_bytes32

if TYPE_CHECKING:  # for the annotation only: chain does not depend on protocol at run time
    from fedledger.protocol import RoundRecord

DOMAIN_NAME = "FederatedLedger"
DOMAIN_VERSION = "1"
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

_DOMAIN_FIELDS = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
GLOBAL_MODEL_FIELDS = [
    {"name": "round", "type": "uint64"},
    {"name": "cid", "type": "string"},
    {"name": "digest", "type": "bytes32"},
    {"name": "updatesRoot", "type": "bytes32"},
    {"name": "manifestCid", "type": "string"},
    {"name": "manifestDigest", "type": "bytes32"},
    {"name": "entryCount", "type": "uint32"},
    {"name": "sm9Signature", "type": "bytes"},
    {"name": "nonce", "type": "uint64"},
]
MEMBERSHIP_CHANGE_FIELDS = [
    {"name": "action", "type": "uint8"},
    {"name": "account", "type": "address"},
    {"name": "sm9Id", "type": "string"},
    {"name": "threshold", "type": "uint32"},
    {"name": "nonce", "type": "uint64"},
]


class MembershipAction(IntEnum):
    """The contract's ACTION_* constants."""

    ADD_INSTITUTION = 0
    REMOVE_INSTITUTION = 1
    SET_THRESHOLD = 2
    SET_AGGREGATOR = 3


@dataclass(frozen=True)
class LedgerDomain:
    """Which ledger an approval is for: chain id + contract address."""

    chain_id: int
    contract: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": to_checksum_address(self.contract),
        }


@dataclass(frozen=True)
class GlobalModelRecord:
    """The round record the approvers (and the SM9 threshold signature) authorise."""

    round: int
    cid: str
    digest: bytes
    updates_root: bytes
    manifest_cid: str
    manifest_digest: bytes
    entry_count: int
    sm9_signature: bytes

    def __post_init__(self) -> None:
        as_bytes32(self.digest, f"round {self.round} global digest")
        as_bytes32(self.updates_root, f"round {self.round} updates root")
        as_bytes32(self.manifest_digest, f"round {self.round} manifest digest")

    @classmethod
    def from_round_record(cls, record: RoundRecord, sm9_signature: bytes) -> GlobalModelRecord:
        """What the contract stores for a threshold-signed round record."""
        return cls(
            record.round,
            record.global_cid,
            record.global_digest,
            record.updates_root,
            record.manifest_cid,
            record.manifest_digest,
            record.entry_count,
            sm9_signature,
        )

    def contract_struct(self) -> tuple[Any, ...]:
        """The contract's ``GlobalModel`` calldata struct (everything but the signature)."""
        return (
            self.round,
            self.cid,
            self.digest,
            self.updates_root,
            self.manifest_cid,
            self.manifest_digest,
            self.entry_count,
        )

    def message(self, nonce: int) -> dict[str, Any]:
        return {
            "round": self.round,
            "cid": self.cid,
            "digest": self.digest,
            "updatesRoot": self.updates_root,
            "manifestCid": self.manifest_cid,
            "manifestDigest": self.manifest_digest,
            "entryCount": self.entry_count,
            "sm9Signature": self.sm9_signature,
            "nonce": nonce,
        }


@dataclass(frozen=True)
class MembershipChange:
    """A membership change; ``threshold`` is k after the change (the current k for SET_AGGREGATOR)."""

    action: MembershipAction
    account: str
    sm9_id: str
    threshold: int

    @classmethod
    def add(cls, account: str, sm9_id: str, threshold: int) -> MembershipChange:
        return cls(MembershipAction.ADD_INSTITUTION, account, sm9_id, threshold)

    @classmethod
    def remove(cls, account: str, threshold: int) -> MembershipChange:
        return cls(MembershipAction.REMOVE_INSTITUTION, account, "", threshold)

    @classmethod
    def set_threshold(cls, threshold: int) -> MembershipChange:
        return cls(MembershipAction.SET_THRESHOLD, ZERO_ADDRESS, "", threshold)

    @classmethod
    def set_aggregator(cls, account: str, current_threshold: int) -> MembershipChange:
        return cls(MembershipAction.SET_AGGREGATOR, account, "", current_threshold)

    def message(self, nonce: int) -> dict[str, Any]:
        return {
            "action": int(self.action),
            "account": to_checksum_address(self.account),
            "sm9Id": self.sm9_id,
            "threshold": self.threshold,
            "nonce": nonce,
        }


def global_model_typed_data(domain: LedgerDomain, record: GlobalModelRecord, nonce: int) -> dict[str, Any]:
    """The full EIP-712 document (what a wallet would display) for a global-model approval."""
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "GlobalModel": GLOBAL_MODEL_FIELDS},
        "primaryType": "GlobalModel",
        "domain": domain.as_dict(),
        "message": record.message(nonce),
    }


def membership_typed_data(domain: LedgerDomain, change: MembershipChange, nonce: int) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, "MembershipChange": MEMBERSHIP_CHANGE_FIELDS},
        "primaryType": "MembershipChange",
        "domain": domain.as_dict(),
        "message": change.message(nonce),
    }


def _signable(typed_data: dict[str, Any]) -> SignableMessage:
    return encode_typed_data(full_message=typed_data)


def typed_data_digest(typed_data: dict[str, Any]) -> bytes:
    """The 32-byte digest that is signed (keccak256(0x1901 || domainSeparator || structHash))."""
    from eth_account.messages import _hash_eip191_message

    return bytes(_hash_eip191_message(_signable(typed_data)))


def sign_typed_data(account: LocalAccount, typed_data: dict[str, Any]) -> bytes:
    """A 65-byte r || s || v signature (v = 27/28, low s) as the contract expects."""
    return bytes(account.sign_message(_signable(typed_data)).signature)


def sign_global_model(
    account: LocalAccount, domain: LedgerDomain, record: GlobalModelRecord, nonce: int
) -> bytes:
    return sign_typed_data(account, global_model_typed_data(domain, record, nonce))


def sign_membership_change(
    account: LocalAccount, domain: LedgerDomain, change: MembershipChange, nonce: int
) -> bytes:
    return sign_typed_data(account, membership_typed_data(domain, change, nonce))


def recover_signer(typed_data: dict[str, Any], signature: bytes) -> str:
    """The address that produced ``signature`` over ``typed_data`` (checksummed)."""
    return str(Account.recover_message(_signable(typed_data), signature=signature))
