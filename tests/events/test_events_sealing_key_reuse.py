"""A role seals every model file with one key object per published encryption master key, so the
fixed-base table behind g^r (~30 ms to build, under 1 ms per sealing after) is built once per process,
not at every vault a role makes; a malformed key is still refused each time, never remembered."""

from __future__ import annotations

import pytest

from fedledger.protocol.consortium import Consortium, Member, Reader
from fedledger.protocol.errors import SealedModelError
from fedledger.protocol.readers import sealing_key_if_any, sealing_master_key
from fedledger.sm9.encryption import encapsulate
from fedledger.sm9.encryption_keys import EncryptMasterKey

MEMBERS = (Member("h", "0x" + "01" * 20, "inst:a", 1),)


def test_one_key_object_per_published_key_and_its_tables_are_kept() -> None:
    kgc = EncryptMasterKey.generate()
    roster = Consortium(1, "0x" + "ab" * 20, "c", 1, MEMBERS, kgc.public_key.to_der().hex(), Reader("agg", "agg", "00"))
    first = sealing_master_key(roster)
    encapsulate(first, "inst:a", 32)  # builds the tables
    again = sealing_key_if_any(Consortium.from_dict(roster.to_dict()))  # a roster read anew: same key
    assert again is first and again == kgc.public_key
    assert first._g_table is not None  # built by the first sealing, kept for every later one
    other = EncryptMasterKey.generate().public_key
    assert sealing_master_key(Consortium(1, roster.contract, "c", 1, MEMBERS, other.to_der().hex())) == other


def test_a_malformed_key_is_refused_every_time() -> None:
    broken = Consortium(1, "0x" + "ab" * 20, "c", 1, MEMBERS, "04" + "00" * 64)
    for _ in range(2):
        with pytest.raises(SealedModelError, match="malformed"):
            sealing_master_key(broken)
