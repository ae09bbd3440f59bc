"""Ledger events as the API's typed answers: hex for bytes, checksummed addresses, event positions.

No verification happens here: a view shows what the ledger says; ``verdicts`` says whether it holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eth_utils import to_checksum_address

from fedledger.audit.index import LedgerSnapshot
from fedledger.audit.lookup import sm9_identity_of, update_entry
from fedledger.audit.models import (
    AccessRecordModel,
    EventRef,
    GlobalModelEntry,
    InstitutionModel,
    RoundListItem,
    RoundRecordModel,
    UpdateEntryModel,
    UpdateListItem,
)
from fedledger.widths import ppm_to_width

if TYPE_CHECKING:
    from fedledger.chain.client import AccessRecorded, EventMeta, GlobalModelPosted, UpdateSubmitted
    from fedledger.protocol import RoundRecord


def hex0x(value: bytes) -> str:
    return "0x" + bytes(value).hex()


def event_ref(meta: EventMeta) -> EventRef:
    return EventRef(block=meta.block_number, tx_hash=meta.tx_hash, log_index=meta.log_index)


def jsonable(args: dict[str, object]) -> dict[str, object]:
    """Event arguments as JSON values (bytes as hex, lists kept)."""

    def convert(value: object) -> object:
        if isinstance(value, bytes | bytearray):
            return hex0x(bytes(value))
        if isinstance(value, list | tuple):
            return [convert(v) for v in value]
        return value

    return {k: convert(v) for k, v in args.items()}


def global_entry(post: GlobalModelPosted) -> GlobalModelEntry:
    return GlobalModelEntry(
        round=post.round,
        cid=post.cid,
        digest=hex0x(post.digest),
        updates_root=hex0x(post.updates_root),
        manifest_cid=post.manifest_cid,
        manifest_digest=hex0x(post.manifest_digest),
        sm9_threshold_signature=hex0x(post.sm9_threshold_signature),
        update_count=post.update_count,
        nonce=post.nonce,
        approvers=[to_checksum_address(a) for a in post.approvers],
        posted=event_ref(post.meta),
    )


def round_list_item(snap: LedgerSnapshot, round: int) -> RoundListItem:
    opened, post = snap.opened[round], snap.posted.get(round)
    return RoundListItem(
        round=round,
        base_cid=opened.base_cid,
        base_digest=hex0x(opened.base_digest),
        aggregator=to_checksum_address(opened.aggregator),
        opened=event_ref(opened.meta),
        update_count=len(snap.updates.get(round, [])),
        posted=post is not None,
        global_cid=post.cid if post else None,
        global_digest=hex0x(post.digest) if post else None,
    )


def round_record_model(record: RoundRecord, signed_as: str) -> RoundRecordModel:
    return RoundRecordModel(
        chain_id=record.chain_id,
        contract=record.contract,
        round=record.round,
        base_digest=hex0x(record.base_digest),
        global_cid=record.global_cid,
        global_digest=hex0x(record.global_digest),
        updates_root=hex0x(record.updates_root),
        manifest_cid=record.manifest_cid,
        manifest_digest=hex0x(record.manifest_digest),
        entry_count=record.entry_count,
        message=hex0x(record.message()),
        signed_as=signed_as,
    )


def update_entry_model(snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateEntryModel:
    return UpdateEntryModel(
        round=event.round,
        institution=to_checksum_address(event.institution),
        sm9_identity=sm9_identity_of(snap, event),
        cid=event.cid,
        digest=hex0x(event.digest),
        mapping_digest=hex0x(event.mapping_digest),
        num_samples=event.num_samples,
        width_rate_ppm=event.width_rate_ppm,
        width_rate=ppm_to_width(event.width_rate_ppm),
        sm9_signature=hex0x(event.sm9_signature),
        leaf=hex0x(update_entry(snap, event).leaf(event.sm9_signature)),
        submitted=event_ref(event.meta),
    )


def update_list_item(snap: LedgerSnapshot, event: UpdateSubmitted, included: bool | None) -> UpdateListItem:
    return UpdateListItem(**update_entry_model(snap, event).model_dump(), included=included)


def access_model(access: AccessRecorded) -> AccessRecordModel:
    return AccessRecordModel(
        accessor=to_checksum_address(access.accessor),
        cid=access.cid,
        purpose=access.purpose,
        recorded=event_ref(access.meta),
    )


def _count_by_address(addresses: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for address in addresses:
        counts[address.lower()] = counts.get(address.lower(), 0) + 1
    return counts


def institution_models(snap: LedgerSnapshot) -> list[InstitutionModel]:
    """Every institution ever registered, in registration order, with what it did."""
    state = snap.membership_at(None)
    first_added: dict[str, EventMeta] = {}
    for event in snap.membership:
        if event.name == "InstitutionAdded":
            first_added.setdefault(str(event.args["institution"]).lower(), event.meta)
    submissions = _count_by_address([e.institution for events in snap.updates.values() for e in events])
    approvals = _count_by_address([a for post in snap.posted.values() for a in {a.lower() for a in post.approvers}])
    accesses = _count_by_address([access.accessor for access in snap.accesses])
    return [
        InstitutionModel(
            address=to_checksum_address(address),
            sm9_id=state.sm9_ids[address],
            active=address in state.active,
            registered_at=event_ref(meta),
            submissions=submissions.get(address, 0),
            approvals=approvals.get(address, 0),
            accesses=accesses.get(address, 0),
        )
        for address, meta in first_added.items()
    ]
