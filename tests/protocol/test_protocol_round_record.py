"""RoundRecord: one constructor from the posted event, one wire form, one conversion to the contract's record."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fedledger.chain.approvals import GlobalModelRecord
from fedledger.protocol import RoundRecord
from node.participant import RecordRefused, check_record

RECORD = RoundRecord(
    31337, "0x" + "11" * 20, 4, b"\x01" * 32, "QmGlobal", b"\x02" * 32, b"\x03" * 32, "QmManifest", b"\x04" * 32, 6
)


@dataclass(frozen=True)
class Posted:  # the fields of fedledger.chain.client.GlobalModelPosted that the record takes
    round: int
    cid: str
    digest: bytes
    updates_root: bytes
    manifest_cid: str
    manifest_digest: bytes
    update_count: int


def test_from_posted_takes_the_event_fields_and_the_opened_base():
    posted = Posted(4, "QmGlobal", b"\x02" * 32, b"\x03" * 32, "QmManifest", b"\x04" * 32, 6)
    assert RoundRecord.from_posted(31337, "0x" + "11" * 20, b"\x01" * 32, posted) == RECORD


def test_wire_form_round_trips():
    assert RoundRecord.from_dict(RECORD.to_dict()) == RECORD


@pytest.mark.parametrize(
    "change",
    [
        {"updates_root": "0x" + "03" * 31},
        {"global_digest": "zz"},
        {"base_digest": 5},
        {"round": "four"},
        {"chain_id": None},
        {"manifest_digest": "0x" + "04" * 33},
        {"entry_count": -1},
        {"entry_count": True},
    ],
)
def test_malformed_wire_form_is_one_value_error(change):
    with pytest.raises(ValueError, match="malformed round record"):
        RoundRecord.from_dict(RECORD.to_dict() | change)
    broken = RECORD.to_dict()
    del broken["global_cid"]
    with pytest.raises(ValueError, match="malformed round record"):
        RoundRecord.from_dict(broken)


def test_node_refuses_a_malformed_session_record_instead_of_crashing():
    # the record is parsed before the node consults its context or the ledger
    with pytest.raises(RecordRefused, match="malformed round record"):
        check_record(None, {"record": RECORD.to_dict() | {"updates_root": "0x00"}})  # type: ignore[arg-type]
    with pytest.raises(RecordRefused, match="malformed round record"):
        check_record(None, {})  # type: ignore[arg-type]


def test_contract_record_keeps_every_signed_field():
    assert GlobalModelRecord.from_round_record(RECORD, b"sig") == GlobalModelRecord(
        4, "QmGlobal", b"\x02" * 32, b"\x03" * 32, "QmManifest", b"\x04" * 32, 6, b"sig"
    )
