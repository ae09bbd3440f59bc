"""The contract's custom errors as Python exceptions with messages a person can act on.

Each Solidity ``error`` has a class here (a test checks the two lists match). ``decode_revert``
turns raw revert data into the matching exception, with the decoded arguments as attributes and in
``fields``; ``call`` names the contract function that reverted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector, to_checksum_address

from fedledger.errors import FedLedgerError


class LedgerError(FedLedgerError):
    """The ledger contract refused a call. Nothing was changed on chain."""

    solidity_name: ClassVar[str] = ""
    template: ClassVar[str] = "the ledger contract reverted"

    def __init__(self, fields: Mapping[str, Any] | None = None, *, call: str = "") -> None:
        self.fields: dict[str, Any] = dict(fields or {})
        self.call = call
        for name, value in self.fields.items():
            setattr(self, name, value)
        super().__init__(self.render())

    def render(self) -> str:
        shown = {k: _show(v) for k, v in self.fields.items()}
        text = self.template.format(**shown)
        prefix = f"{self.call}: " if self.call else ""
        name = f" [{self.solidity_name}]" if self.solidity_name else ""
        return f"{prefix}{text}{name}"


class LedgerRevert(LedgerError):
    """A revert that is not one of the contract's custom errors (out of gas, panic, unknown data)."""

    template = "the ledger contract reverted ({detail})"


def _show(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return to_checksum_address(value)
    return value


# One class per custom error in FederatedLedger.sol, in declaration order.
class NotAggregator(LedgerError):
    template = "{caller} is not the aggregator; only the aggregator opens rounds and posts global models"


class NotActiveInstitution(LedgerError):
    template = "{account} is not an active institution of this ledger"


class NotMember(LedgerError):
    template = "{caller} is neither an active institution nor the aggregator, so it may not record access"


class ZeroAddress(LedgerError):
    template = "the zero address cannot be an institution or the aggregator"


class AlreadyActive(LedgerError):
    template = "{account} is already an active institution"


class Sm9IdTaken(LedgerError):
    template = "SM9 identity {sm9Id!r} is already bound to {owner}; identities never move to another address"


class InvalidSm9Id(LedgerError):
    template = "an SM9 identity must be 1..256 bytes, got {length}"


class InvalidThreshold(LedgerError):
    template = (
        "threshold k={threshold} is invalid with {activeInstitutions} active institutions (1 <= k <= n)"
    )


class InstitutionListMismatch(LedgerError):
    template = "{accounts} institution addresses but {sm9Ids} SM9 identities"


class UnexpectedRound(LedgerError):
    template = "round {given} cannot be opened now: rounds are sequential and the next one is {expected}"


class RoundStillOpen(LedgerError):
    template = "round {round} is still open; its global model must be posted first"


class RoundNotOpen(LedgerError):
    template = "round {round} is not the open round"


class BaseModelMismatch(LedgerError):
    template = (
        "round {round} must start from round {round}-1's posted global model (digest {expected}), not {given}"
    )


class AlreadySubmitted(LedgerError):
    template = "{institution} already submitted its update for round {round}; submissions are never replaced"


class InvalidCid(LedgerError):
    template = "a CID must be 1..128 bytes, got {length}"


class ZeroDigest(LedgerError):
    template = "a digest of all zero bytes is not a digest"


class InvalidWidthRate(LedgerError):
    template = "width rate {widthRate} ppm is outside 1..1000000 (1000000 = full width)"


class ZeroSamples(LedgerError):
    template = "an update must report at least one training sample"


class InvalidSm9Signature(LedgerError):
    template = "an SM9 signature must be 1..512 bytes, got {length}"


class InvalidPurpose(LedgerError):
    template = "an access purpose must be 1..256 bytes, got {length}"


class InvalidApprovalSignature(LedgerError):
    template = "approval #{index} is not a valid 65-byte low-s ECDSA signature"


class ApproverNotActive(LedgerError):
    template = (
        "approval #{index} recovers to {signer}, which is not an active institution "
        "(signed by a non-member, or over another record, round, nonce, chain or contract)"
    )


class NotEnoughApprovals(LedgerError):
    template = "{distinct} distinct approvals from active institutions, {required} required"


class EntryCountMismatch(LedgerError):
    template = (
        "the record accounts for {given} entries but the round has {submitted}: an update landed after "
        "the manifest was built, so the manifest must be redone"
    )


class InvalidPrivacyBudget(LedgerError):
    template = (
        "privacy budget epsilon {epsilonMicro} micro / delta {deltaPico} pico is invalid: both zero (no "
        "budget), or epsilon > 0 with 0 < delta < 1"
    )


CUSTOM_ERRORS: tuple[type[LedgerError], ...] = (
    NotAggregator,
    NotActiveInstitution,
    NotMember,
    ZeroAddress,
    AlreadyActive,
    Sm9IdTaken,
    InvalidSm9Id,
    InvalidThreshold,
    InstitutionListMismatch,
    UnexpectedRound,
    RoundStillOpen,
    RoundNotOpen,
    BaseModelMismatch,
    AlreadySubmitted,
    InvalidCid,
    ZeroDigest,
    InvalidWidthRate,
    ZeroSamples,
    InvalidSm9Signature,
    InvalidPurpose,
    InvalidApprovalSignature,
    ApproverNotActive,
    NotEnoughApprovals,
    EntryCountMismatch,
    InvalidPrivacyBudget,
)
for _cls in CUSTOM_ERRORS:
    _cls.solidity_name = _cls.__name__


class ErrorDecoder:
    """Maps revert data to exceptions using the contract ABI's error entries."""

    def __init__(self, abi: list[dict[str, Any]]) -> None:
        by_name = {cls.solidity_name: cls for cls in CUSTOM_ERRORS}
        self._errors: dict[bytes, tuple[type[LedgerError], list[str], list[str]]] = {}
        for entry in abi:
            if entry.get("type") != "error":
                continue
            types = [i["type"] for i in entry["inputs"]]
            selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
            cls = by_name.get(entry["name"], LedgerError)
            self._errors[selector] = (cls, [i["name"] for i in entry["inputs"]], types)

    def decode(self, data: bytes, call: str = "") -> LedgerError:
        if len(data) >= 4 and data[:4] in self._errors:
            cls, names, types = self._errors[data[:4]]
            try:
                values = abi_decode(types, data[4:])
            except Exception:  # malformed data: report it rather than hide the revert
                return LedgerRevert({"detail": f"undecodable {cls.__name__} data 0x{data.hex()}"}, call=call)
            return cls(dict(zip(names, values, strict=True)), call=call)
        detail = f"revert data 0x{data.hex()}" if data else "no revert data"
        return LedgerRevert({"detail": detail}, call=call)


def revert_data_of(exc: BaseException) -> bytes | None:
    """The raw revert data carried by a web3 contract-logic error, if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    return None
