"""The few protobuf wire-format primitives dag-pb and UnixFS need (varint and bytes fields).

dag-pb and UnixFS are two tiny proto2 schemas; a generated-code dependency would be larger than
this module, and the exact byte layout (field order, which fields are omitted) is what makes the
CIDs match Kubo's, so it is spelled out here rather than left to a library's choices.
"""

from __future__ import annotations

from collections.abc import Iterator

from fedledger.store.cid import decode_varint, encode_varint

VARINT = 0
LEN = 2


def key(field: int, wire_type: int) -> bytes:
    return encode_varint((field << 3) | wire_type)


def varint_field(field: int, value: int) -> bytes:
    return key(field, VARINT) + encode_varint(value)


def bytes_field_header(field: int, length: int) -> bytes:
    """The key and length that precede a length-delimited field's payload."""
    return key(field, LEN) + encode_varint(length)


def bytes_field(field: int, payload: bytes | memoryview) -> bytes:
    return bytes_field_header(field, len(payload)) + bytes(payload)


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield (field number, wire type, value) for every field: ints for varints, views for bytes.

    Raises ValueError on truncation or on wire types dag-pb/UnixFS never use (fixed32/64, groups).
    """
    view = memoryview(data)
    pos = 0
    while pos < len(view):
        tag, pos = decode_varint(view, pos)
        field, wire_type = tag >> 3, tag & 7
        if field == 0:
            raise ValueError("protobuf field number 0")
        if wire_type == VARINT:
            value, pos = decode_varint(view, pos)
            yield field, wire_type, value
        elif wire_type == LEN:
            length, pos = decode_varint(view, pos)
            end = pos + length
            if end > len(view):
                raise ValueError(f"field {field} runs past the end of the message")
            yield field, wire_type, view[pos:end]
            pos = end
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type} (field {field})")
