"""The audit API's typed answers (pydantic): what the service returns and what OpenAPI documents.

Byte strings (digests, signatures, Merkle nodes) are 0x-prefixed lower-case hex; addresses are
EIP-55 checksummed. A verdict is a set of named checks, each ``{ok, detail}``, so a reader sees
both that something failed and why.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from fedledger.protocol.manifest import ReasonCode

T = TypeVar("T")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Check(_Model):
    """One verification step: whether it passed and what was found."""

    ok: bool = Field(description="True when the check passed.")
    detail: str = Field(description="What was checked and what was found, in words.")


class ErrorResponse(_Model):
    """Body of every error answer."""

    error: str = Field(description="Machine-readable kind, e.g. not_found, invalid_parameter.")
    message: str = Field(description="What went wrong, naming the round / address / CID concerned.")
    detail: list[dict[str, Any]] | None = Field(
        default=None, description="Per-parameter problems, for invalid_parameter."
    )


class Page(_Model, Generic[T]):
    """One page of a longer list: ``items`` are entries ``offset`` .. ``offset + limit - 1``."""

    total: int = Field(description="Number of entries in the whole list.")
    offset: int
    limit: int
    items: list[T]


class EventRef(_Model):
    """Where on the chain an event was emitted."""

    block: int
    tx_hash: str
    log_index: int


# ------------------------------------------------------------------------------------ rounds


class RoundListItem(_Model):
    round: int
    base_cid: str = Field(description="CID of the model the round started from.")
    base_digest: str = Field(description="SM3 digest of the base model, as the ledger records it.")
    aggregator: str = Field(description="Address that opened the round.")
    opened: EventRef
    update_count: int = Field(description="UpdateSubmitted entries of this round.")
    posted: bool = Field(description="Whether the round's global model has been posted (round closed).")
    global_cid: str | None = None
    global_digest: str | None = None


class ModelRef(_Model):
    cid: str
    digest: str
    origin: str = Field(description="Where the model comes from, e.g. 'initial model' or 'round 2 global'.")


class GlobalModelEntry(_Model):
    """A ``GlobalModelPosted`` event."""

    round: int
    cid: str
    digest: str
    updates_root: str = Field(description="Merkle root (SM3) over the included update entries.")
    manifest_cid: str = Field(description="CID of the round manifest (included and excluded entries, reasons).")
    manifest_digest: str = Field(description="SM3 of the round manifest's bytes.")
    sm9_threshold_signature: str = Field(description="DER of the consortium's k-of-n SM9 signature.")
    update_count: int = Field(description="Updates submitted to the round when it was posted.")
    nonce: int = Field(description="The contract's approval nonce the approvals signed.")
    approvers: list[str] = Field(description="Distinct institutions whose EIP-712 approvals the contract counted.")
    posted: EventRef


class RoundRecordModel(_Model):
    """The round record the consortium threshold-signs, rebuilt from the chain."""

    chain_id: int
    contract: str
    round: int
    base_digest: str
    global_cid: str
    global_digest: str
    updates_root: str
    manifest_cid: str = Field(description="CID of the round manifest: every entry included or left out, with reasons.")
    manifest_digest: str = Field(description="SM3 of the round manifest's bytes.")
    entry_count: int = Field(description="Entries the manifest accounts for (the contract checked the round's count).")
    message: str = Field(description="The canonical bytes that were signed, hex.")
    signed_as: str = Field(description="SM9 identity the threshold signature must verify under.")


class GlobalVerdict(_Model):
    content: Check = Field(description="Global model content present in the store and its SM3 digest matches.")
    threshold_signature: Check = Field(description="Consortium SM9 signature over the round record is valid.")
    approvals: Check = Field(description="At least k distinct member approvals (k and members as of posting).")
    updates_root: Check = Field(description="Merkle root recomputed from the included ledger entries matches.")
    included_entries: Check = Field(description="Every included entry carries a valid submitter SM9 signature.")
    base_model: Check = Field(description="The round started from the previous round's global (or the initial model).")
    secure_aggregation: Check | None = Field(
        None,
        description="Secure rounds only: the published joins, setup and unmasking check out, and what is not checked.",
    )
    verified: bool = Field(description="All checks passed.")


class ExcludedEntry(_Model):
    """An entry the round manifest leaves out, with its reason."""

    institution: str
    cid: str
    code: str = Field(description="Reason code: " + ", ".join(c.value for c in ReasonCode) + ".")
    reason: str


class GlobalModelResponse(_Model):
    entry: GlobalModelEntry
    record: RoundRecordModel
    included: list[str] | None = Field(
        description="Addresses the round manifest includes (None when the manifest does not account for the round)."
    )
    excluded: list[ExcludedEntry] | None = Field(
        default=None, description="Entries the round manifest leaves out, each with its reason code and reason."
    )
    verdict: GlobalVerdict


class Failure(_Model):
    """One failed check, located."""

    kind: Literal["update", "global", "round"]
    round: int
    institution: str | None = None
    cid: str | None = None
    check: str = Field(description="Name of the failed check, e.g. content, signature, threshold_signature.")
    detail: str


class RoundVerdictSummary(_Model):
    status: Literal["verified", "failed", "open"] = Field(
        description="verified: posted and every check passed; failed: some check failed; "
        "open: no global model yet and nothing failed so far."
    )
    updates_verified: int
    updates_failed: int
    global_verified: bool | None = Field(description="None while no global model is posted.")
    failures: list[Failure]


class RoundDetail(_Model):
    round: int
    aggregator: str
    opened: EventRef
    base_model: ModelRef
    global_model: GlobalModelEntry | None
    update_count: int
    approvers: list[str]
    included: list[str] | None = Field(
        description="Institutions whose entries the round record includes (None while not posted "
        "or when no subset of entries makes the posted root)."
    )
    verdict: RoundVerdictSummary


# ------------------------------------------------------------------------------------ updates


class UpdateEntryModel(_Model):
    """An ``UpdateSubmitted`` event: the entry the institution SM9-signed."""

    round: int
    institution: str
    sm9_identity: str | None = Field(description="The submitter's SM9 identity when it submitted.")
    cid: str
    digest: str
    mapping_digest: str
    num_samples: int
    width_rate_ppm: int
    width_rate: float
    sm9_signature: str
    leaf: str = Field(description="The entry's Merkle leaf (SM3).")
    submitted: EventRef


class UpdateListItem(UpdateEntryModel):
    included: bool | None = Field(
        description="Whether the posted round record includes this entry (None while not posted)."
    )


class UpdateVerdict(_Model):
    content: Check = Field(description="Update content present in the store and its SM3 digest matches.")
    signature: Check = Field(description="The submitter's SM9 signature over the entry is valid.")
    included: Check | None = Field(
        description="The entry is in the round record's Merkle root (None while the round is open)."
    )
    verified: bool = Field(description="Every present check passed.")
    final: bool = Field(description="The round is posted, so the verdict covers inclusion too.")


class UpdateWithVerdict(_Model):
    entry: UpdateEntryModel
    verdict: UpdateVerdict


class InclusionProof(_Model):
    """Merkle inclusion proof of an update entry's leaf in the posted updates root."""

    round: int
    institution: str
    leaf: str
    index: int = Field(description="Position of the leaf (leaves are sorted by address, lower-case hex).")
    leaf_count: int
    siblings: list[str]
    sibling_on_left: list[bool]
    updates_root: str
    verified: bool = Field(description="The proof links the leaf to the root (checked by the server too).")


# ------------------------------------------------------------------------------------ institutions


class InstitutionModel(_Model):
    address: str
    sm9_id: str
    active: bool
    registered_at: EventRef = Field(description="First InstitutionAdded event.")
    submissions: int
    approvals: int
    accesses: int


class MembershipEventModel(_Model):
    event: str
    args: dict[str, Any]
    at: EventRef


class ApprovalModel(_Model):
    """A global model this institution approved (counted by the contract)."""

    round: int
    global_cid: str
    global_digest: str
    posted: EventRef


class AccessRecordModel(_Model):
    accessor: str
    cid: str
    purpose: str
    recorded: EventRef


class InstitutionHistory(_Model):
    institution: InstitutionModel
    membership: list[MembershipEventModel]
    submissions: Page[UpdateListItem]
    approvals: Page[ApprovalModel]
    accesses: Page[AccessRecordModel]


# ------------------------------------------------------------------------------------ lineage


class LineageStep(_Model):
    round: int
    kind: Literal["global", "update"]
    model_cid: str
    model_digest: str
    base_cid: str
    base_digest: str
    link: Check = Field(description="The base is the previous round's global model (round 0: the initial model).")


class Lineage(_Model):
    cid: str
    kind: Literal["global", "update", "initial"]
    round: int | None = Field(description="Round the model belongs to (None for the initial model).")
    steps: list[LineageStep] = Field(description="Newest first, down to round 0.")
    initial_model: ModelRef
    complete: bool = Field(description="Every link holds, back to round 0.")


# ------------------------------------------------------------------------------------ privacy


class PrivacyBudgetModel(_Model):
    """The consortium's differential-privacy budget as the contract holds it."""

    epsilon: float
    delta: float
    set_at: EventRef = Field(description="The PrivacyBudgetChanged event (deployment or k-of-n change).")


class RoundEpsilon(_Model):
    round: int
    dp: dict[str, Any] | None = Field(description="The round's recorded DP parameters; null: the round used no DP.")
    epsilon: float | None = Field(description="This round's own epsilon at the budget's delta.")
    cumulative_epsilon: float | None = Field(description="Epsilon of every DP round up to this one.")
    detail: str


class PrivacyAccountModel(_Model):
    """Epsilon per posted round and cumulatively, recomputed from the recorded parameters alone."""

    budget: PrivacyBudgetModel | None = Field(description="null: the ledger sets no budget (no DP).")
    spent_epsilon: float = Field(description="Cumulative epsilon of every posted DP round.")
    remaining_epsilon: float | None
    within_budget: bool = Field(
        description="No budget and no DP round, or spent <= budget; false also when a round's parameters "
        "could not be read, or a round ran without DP while a budget was in force."
    )
    rounds: list[RoundEpsilon]


# ------------------------------------------------------------------------------------ summary


class Counts(_Model):
    total: int
    verified: int
    failed: int


class AuditSummary(_Model):
    chain_id: int
    contract: str
    consortium_identity: str
    threshold: int
    institutions: int = Field(description="Active institutions.")
    checked_at_block: int
    rounds: int = Field(description="Rounds opened.")
    rounds_posted: int
    open_round: int | None
    updates: Counts
    global_models: Counts
    access_records: int
    status: Literal["verified", "failed", "nothing_to_verify"] = Field(
        description="verified: every check passed on at least one round; nothing_to_verify: no round "
        "was ever opened, so nothing was vouched for."
    )
    all_verified: bool = Field(description="At least one round, and no check failed anywhere.")
    failures: list[Failure]


class Health(_Model):
    status: Literal["ok"]
    chain_id: int
    contract: str
    block: int
