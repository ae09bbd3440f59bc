"""as_bytes32: the one check for the ledger's bytes32 digest fields (entries, records, client calls)."""

from __future__ import annotations

import pytest

from fedledger.chain.approvals import GlobalModelRecord
from fedledger.digests import as_bytes32
from fedledger.protocol import UpdateEntry


def test_accepts_32_bytes_and_returns_bytes():
    assert as_bytes32(bytearray(32), "root") == bytes(32)


@pytest.mark.parametrize(
    ("bad", "got"), [(b"\x01" * 31, "31"), (b"\x01" * 33, "33"), ("a" * 32, "str"), (None, "NoneType")]
)
def test_refuses_anything_else_naming_the_field(bad, got):
    with pytest.raises(ValueError, match=f"updates root must be 32 bytes, got {got}"):
        as_bytes32(bad, "updates root")


def test_every_caller_refuses_a_32_char_string_digest():
    with pytest.raises(ValueError, match="global digest must be 32 bytes"):
        GlobalModelRecord(1, "Qm", "a" * 32, bytes(32), "Qm", bytes(32), 0, b"sig")  # type: ignore[arg-type]
    entry = UpdateEntry(1, "0x" + "11" * 20, 0, "0x" + "22" * 20, "Qm", "b" * 32, 1, 1, bytes(32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="update digest must be 32 bytes"):
        entry.message()
