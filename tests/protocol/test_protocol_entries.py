"""Canonical entry encodings: domain separation, field binding and input checks."""

from __future__ import annotations

import dataclasses

import pytest

from fedledger.protocol import RoundRecord, UpdateEntry, ppm_to_width, width_to_ppm

ENTRY = UpdateEntry(
    chain_id=31337,
    contract="0x" + "11" * 20,
    round=2,
    institution="0x" + "22" * 20,
    cid="QmTz3oc4gdpRMKP2sdGUPZTAGRngqjsi99BPoztyP53JMM",
    digest=b"\x33" * 32,
    num_samples=120,
    width_ppm=500_000,
    mapping_digest=b"\x44" * 32,
)


@pytest.mark.parametrize(
    "field,value",
    [
        ("chain_id", 1),
        ("contract", "0x" + "12" * 20),
        ("round", 3),
        ("institution", "0x" + "23" * 20),
        ("cid", "QmTz3oc4gdpRMKP2sdGUPZTAGRngqjsi99BPoztyP53JMN"),
        ("digest", b"\x34" * 32),
        ("num_samples", 121),
        ("width_ppm", 250_000),
        ("mapping_digest", b"\x45" * 32),
    ],
)
def test_every_field_is_bound_into_the_signed_message(field: str, value: object) -> None:
    changed = dataclasses.replace(ENTRY, **{field: value})
    assert changed.message() != ENTRY.message()
    assert changed.leaf(b"sig") != ENTRY.leaf(b"sig")


def test_leaf_binds_the_signature() -> None:
    assert ENTRY.leaf(b"sig-1") != ENTRY.leaf(b"sig-2")


def test_entry_and_record_messages_are_domain_separated() -> None:
    record = RoundRecord(
        31337, ENTRY.contract, 2, b"\x33" * 32, ENTRY.cid, b"\x44" * 32, b"\x55" * 32, ENTRY.cid, b"\x66" * 32, 1
    )
    assert b"update-entry" in ENTRY.message()
    assert b"round-record" in record.message()
    assert record.message() != ENTRY.message()


@pytest.mark.parametrize(
    "bad",
    [
        {"digest": b"\x00" * 31},
        {"mapping_digest": b""},
        {"contract": "0x1234"},
        {"institution": "not-hex"},
    ],
)
def test_malformed_fields_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(ENTRY, **bad).message()


def test_width_rate_round_trip_and_bounds() -> None:
    assert width_to_ppm(0.125) == 125_000
    assert ppm_to_width(width_to_ppm(0.5)) == 0.5
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError):
            width_to_ppm(bad)
