"""UnixFS ``Data`` messages for files, as Kubo's importer writes them.

A leaf holds {Type: File, Data: chunk, filesize: len(chunk)} (Data omitted for the empty file);
an inner node holds {Type: File, filesize: total, blocksizes: [each child's file bytes]} and no
Data. blocksizes is a repeated, non-packed varint field (proto2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.store import protobuf as pb
from fedledger.store.cid import decode_varint
from fedledger.store.dagpb import data_field_header

RAW = 0
DIRECTORY = 1
FILE = 2
_TYPE_NAMES = {0: "Raw", 1: "Directory", 2: "File", 3: "Metadata", 4: "Symlink", 5: "HAMTShard"}

_F_TYPE = 1
_F_DATA = 2
_F_FILESIZE = 3
_F_BLOCKSIZES = 4


@dataclass(frozen=True, slots=True)
class UnixFSData:
    type: int
    data: bytes
    filesize: int | None
    blocksizes: tuple[int, ...]

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES.get(self.type, f"unknown({self.type})")


def leaf_block_parts(chunk: bytes) -> tuple[bytes, bytes, bytes]:
    """A CIDv0 leaf block (a link-less PBNode wrapping one chunk) as (header, chunk, trailer)."""
    if chunk:
        head = pb.varint_field(_F_TYPE, FILE) + pb.bytes_field_header(_F_DATA, len(chunk))
    else:
        head = pb.varint_field(_F_TYPE, FILE)
    tail = pb.varint_field(_F_FILESIZE, len(chunk))
    return data_field_header(len(head) + len(chunk) + len(tail)) + head, chunk, tail


def leaf_block(chunk: bytes) -> bytes:
    """The whole dag-pb block of a CIDv0 leaf."""
    return b"".join(leaf_block_parts(chunk))


def inner_data(filesize: int, blocksizes: Sequence[int]) -> bytes:
    """The UnixFS Data of an inner file node (goes into the PBNode's Data field)."""
    parts = [pb.varint_field(_F_TYPE, FILE), pb.varint_field(_F_FILESIZE, filesize)]
    parts.extend(pb.varint_field(_F_BLOCKSIZES, size) for size in blocksizes)
    return b"".join(parts)


def decode(data: bytes | memoryview) -> UnixFSData:
    """Parse a UnixFS Data message; raises ValueError when it is not one."""
    type_: int | None = None
    payload = b""
    filesize: int | None = None
    blocksizes: list[int] = []
    for field, wire_type, value in pb.iter_fields(data):
        if field == _F_TYPE and wire_type == pb.VARINT:
            assert isinstance(value, int)
            type_ = value
        elif field == _F_DATA and wire_type == pb.LEN:
            assert isinstance(value, memoryview)
            payload = bytes(value)
        elif field == _F_FILESIZE and wire_type == pb.VARINT:
            assert isinstance(value, int)
            filesize = value
        elif field == _F_BLOCKSIZES and wire_type == pb.VARINT:
            assert isinstance(value, int)
            blocksizes.append(value)
        elif field == _F_BLOCKSIZES and wire_type == pb.LEN:  # tolerate a packed encoding
            assert isinstance(value, memoryview)
            blocksizes.extend(_packed_varints(value))
        elif field in (5, 6, 7, 8) or field > 8:
            continue  # hashType, fanout, mode, mtime: irrelevant for reading file bytes
        else:
            raise ValueError(f"unexpected field {field} (wire type {wire_type}) in UnixFS Data")
    if type_ is None:
        raise ValueError("UnixFS Data without Type")
    return UnixFSData(type_, payload, filesize, tuple(blocksizes))


def _packed_varints(view: memoryview) -> list[int]:
    out: list[int] = []
    pos = 0
    while pos < len(view):
        value, pos = decode_varint(view, pos)
        out.append(value)
    return out
