"""Hostile CID strings and bytes: every one is refused with InvalidCIDError and a reason, nothing else.

A member can put any string in ``submitUpdate``'s cid; whoever reads it (aggregator, nodes, the
audit) parses it, so the parser must never raise anything but InvalidCIDError.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.errors import FedLedgerError
from fedledger.store.cid import CID, DAG_PB, RAW, b32encode_lower, b58encode, encode_varint
from fedledger.store.errors import InvalidCIDError, StoreError

GOOD_V0 = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
GOOD_V1 = str(CID.for_block(b"x", version=1, codec=RAW))
DIGEST = bytes(range(32))


def _v1(body: bytes) -> str:
    return "b" + b32encode_lower(body)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "blank"),
        (" ", "blank"),
        ("\t\n ", "blank"),
        ("b", "CID"),
        ("z", "CID"),
        ("Q", "expected"),
        ("m" + GOOD_V1[1:], "expected"),  # unknown multibase prefix
        ("B" + GOOD_V1[1:].upper(), "expected"),  # upper-case base32 is not what Kubo prints
        (GOOD_V1.upper(), "expected"),
        ("b" + GOOD_V1[1:].upper(), "canonical"),
        (GOOD_V1 + "a", "CID"),  # one character too many
        (GOOD_V0[:-1] + "0", "base58"),  # '0' is not in the base58 alphabet
        ("Qm" + "é" * 44, "non-ASCII"),
        ("b" + "\u0430" * 58, "non-ASCII"),  # Cyrillic a
        ("z" + "1" * 10_000, "characters"),  # huge
        (_v1(bytes([1, 0x70, 0x12])), "truncated varint"),  # cut off before the digest length
        (_v1(bytes([1, 0x70, 0x12, 0x20]) + DIGEST[:31]), "truncated"),  # digest one byte short
        (_v1(bytes([1, 0x70, 0x12, 0x1F]) + DIGEST[:31]), "multihash"),  # wrong multihash length
        (_v1(bytes([1, 0x70, 0x13, 0x40]) + bytes(64)), "multihash"),  # sha2-512
        (_v1(bytes([1, 0x70, 0x12]) + encode_varint(2**62) + DIGEST), "multihash"),  # huge length
        (_v1(bytes([1, 0x70, 0x12]) + b"\xff" * 12), "varint"),  # a varint that never ends
        (_v1(bytes([1, 0x71, 0x12, 0x20]) + DIGEST), "codec"),  # dag-cbor
        (_v1(bytes([2, 0x70, 0x12, 0x20]) + DIGEST), "version"),
        (_v1(bytes([0x81, 0x00, 0x70, 0x12, 0x20]) + DIGEST), "minimally"),  # padded varint 1
        (_v1(bytes([1, 0x70, 0x12, 0x20]) + DIGEST + b"\x00"), "trailing"),
        (_v1(bytes([0x12, 0x20]) + DIGEST), "canonical"),  # a CIDv0 dressed as base32
    ],
)
def test_malformed_cid_strings_raise_invalid_cid_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidCIDError, match=reason) as caught:
        CID.parse(text)
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, FedLedgerError)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x12",
        b"\x12\x20" + DIGEST[:5],
        b"\x01",
        b"\x01\x70\x12",
        b"\x01\x70\x12\x20",
        b"\x01\x70\x12" + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"\x01\x70\x12\x20" + DIGEST + b"extra",
        b"\x00\x70\x12\x20" + DIGEST,
    ],
)
def test_malformed_binary_cids_raise_invalid_cid(data: bytes) -> None:
    with pytest.raises(InvalidCIDError):
        CID.from_bytes(data)


def test_non_strings_are_refused_by_name() -> None:
    with pytest.raises(InvalidCIDError, match="expected a string"):
        CID.parse(b"Qm")  # type: ignore[arg-type]
    with pytest.raises(InvalidCIDError, match="expected bytes"):
        CID.from_bytes("Qm")  # type: ignore[arg-type]


def test_valid_forms_still_parse() -> None:
    assert str(CID.parse(GOOD_V0)) == GOOD_V0
    assert str(CID.parse(f"  {GOOD_V1}\n")) == GOOD_V1
    as_z = "z" + b58encode(CID.parse(GOOD_V1).to_bytes())
    assert CID.parse(as_z) == CID.parse(GOOD_V1)


def _check_parse(text: str) -> None:
    try:
        cid = CID.parse(text)
    except InvalidCIDError:
        return
    assert CID.parse(str(cid)) == cid
    assert CID.from_bytes(cid.to_bytes()) == cid
    if not text.strip().startswith("z"):
        assert str(cid) == text.strip()


def _check_bytes(data: bytes) -> None:
    try:
        cid = CID.from_bytes(data)
    except InvalidCIDError:
        return
    assert cid.to_bytes() == data  # canonical: one CID, one binary form
    assert CID.parse(str(cid)) == cid


_settings = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_prefixes = st.sampled_from(["", "b", "z", "Qm", "B", " ", "bafy", "bafk"])
_cid_bytes = st.builds(
    lambda version, codec, code, length, digest: (
        encode_varint(version) + encode_varint(codec) + encode_varint(code) + encode_varint(length) + digest
    ),
    st.sampled_from([0, 1, 2]),
    st.sampled_from([DAG_PB, RAW, 0x71]),
    st.sampled_from([0x12, 0x13]),
    st.integers(0, 40),
    st.binary(min_size=0, max_size=40),
)


@_settings
@given(prefix=_prefixes, rest=st.text(max_size=70))
def test_parse_of_any_text_parses_and_round_trips_or_raises_invalid_cid(prefix: str, rest: str) -> None:
    _check_parse(prefix + rest)


@_settings
@given(body=st.one_of(st.binary(max_size=48), _cid_bytes))
def test_parse_of_any_base32_or_base58_body_round_trips_or_raises_invalid_cid(body: bytes) -> None:
    _check_parse("b" + b32encode_lower(body))
    _check_parse("z" + b58encode(body))
    _check_bytes(body)
