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
PRIVACY_BUDGET_FIELDS = [
    {"name": "epsilonMicro", "type": "uint64"},
    {"name": "deltaPico", "type": "uint64"},
    {"name": "nonce", "type": "uint64"},
]
EPSILON_UNIT = 10**6  # the contract's epsilon is in millionths
DELTA_UNIT = 10**12  # and its delta in 10^-12


class MembershipAction(IntEnum):
    """The contract's ACTION_* constants."""

    ADD_INSTITUTION = 0
    REMOVE_INSTITUTION = 1
    SET_THRESHOLD = 2
    SET_AGGREGATOR = 3
    SET_PRIVACY_BUDGET = 4  # signed as its own PrivacyBudgetChange struct


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


@dataclass(frozen=True)
class PrivacyBudgetSetting:
    """The consortium's (epsilon, delta) budget in the contract's integer units; (0, 0) is no budget.

    Integers, because the ledger stores integers and the approvers must sign exactly what it stores.
    """

    epsilon_micro: int
    delta_pico: int

    def __post_init__(self) -> None:
        none = self.epsilon_micro == 0 and self.delta_pico == 0
        valid = 0 < self.epsilon_micro < 2**64 and 0 < self.delta_pico < DELTA_UNIT
        if not (none or valid):
            raise ValueError(
                f"privacy budget needs epsilon > 0 and 0 < delta < 1 (or both 0 for none), got "
                f"epsilon {self.epsilon_micro}/10^6, delta {self.delta_pico}/10^12"
            )

    @classmethod
    def of(cls, epsilon: float, delta: float) -> PrivacyBudgetSetting:
        """From real (epsilon, delta), rounded to the contract's units."""
        return cls(round(epsilon * EPSILON_UNIT), round(delta * DELTA_UNIT))

    @property
    def is_set(self) -> bool:
        return self.epsilon_micro > 0

    @property
    def epsilon(self) -> float:
        return self.epsilon_micro / EPSILON_UNIT

    @property
    def delta(self) -> float:
        return self.delta_pico / DELTA_UNIT

    def message(self, nonce: int) -> dict[str, Any]:
        return {"epsilonMicro": self.epsilon_micro, "deltaPico": self.delta_pico, "nonce": nonce}


NO_PRIVACY_BUDGET = PrivacyBudgetSetting(0, 0)


def _typed_data(
    domain: LedgerDomain, primary: str, fields: list[dict[str, str]], message: dict[str, Any]
) -> dict[str, Any]:
    return {
        "types": {"EIP712Domain": _DOMAIN_FIELDS, primary: fields},
        "primaryType": primary,
        "domain": domain.as_dict(),
        "message": message,
    }


def global_model_typed_data(domain: LedgerDomain, record: GlobalModelRecord, nonce: int) -> dict[str, Any]:
    """The full EIP-712 document (what a wallet would display) for a global-model approval."""
    return _typed_data(domain, "GlobalModel", GLOBAL_MODEL_FIELDS, record.message(nonce))


def membership_typed_data(domain: LedgerDomain, change: MembershipChange, nonce: int) -> dict[str, Any]:
    return _typed_data(domain, "MembershipChange", MEMBERSHIP_CHANGE_FIELDS, change.message(nonce))


def privacy_budget_typed_data(domain: LedgerDomain, budget: PrivacyBudgetSetting, nonce: int) -> dict[str, Any]:
    return _typed_data(domain, "PrivacyBudgetChange", PRIVACY_BUDGET_FIELDS, budget.message(nonce))


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
