"""dag-pb (PBNode / PBLink) encoding and decoding, byte-for-byte as Kubo writes it.

Canonical dag-pb puts the Links (field 2) before Data (field 1) even though Data has the lower
number. Kubo always writes a link's Name, so an unnamed link carries an empty Name field
(0x12 0x00): leaving it out would give different CIDs for every multi-block file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fedledger.store import protobuf as pb
from fedledger.store.cid import CID

_NODE_DATA = 1
_NODE_LINKS = 2
_LINK_HASH = 1
_LINK_NAME = 2
_LINK_TSIZE = 3


@dataclass(frozen=True, slots=True)
class PBLink:
    """A link to a child block; ``tsize`` is the child's block length plus its own children's."""

    cid: CID
    tsize: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | memoryview | None  # a view into the block when decoded (saves a copy per leaf)


def encode_link(link: PBLink) -> bytes:
    body = (
        pb.bytes_field(_LINK_HASH, link.cid.to_bytes())
        + pb.bytes_field(_LINK_NAME, link.name.encode("utf-8"))
        + pb.varint_field(_LINK_TSIZE, link.tsize)
    )
    return pb.bytes_field(_NODE_LINKS, body)


def encode_node(links: Sequence[PBLink], data: bytes | memoryview | None) -> bytes:
    """Serialise a node: links first, then the Data field (omitted when ``data`` is None)."""
    parts = [encode_link(link) for link in links]
    if data is not None:
        parts.append(pb.bytes_field(_NODE_DATA, data))
    return b"".join(parts)


def data_field_header(length: int) -> bytes:
    """Header of a link-less node's Data field; lets leaf builders avoid copying the payload twice."""
    return pb.bytes_field_header(_NODE_DATA, length)


def decode_node(block: bytes | memoryview) -> PBNode:
    """Parse a dag-pb block; raises ValueError when it is not one."""
    links: list[PBLink] = []
    data: memoryview | None = None
    for field, wire_type, value in pb.iter_fields(block):
        if field == _NODE_LINKS and wire_type == pb.LEN:
            if data is not None:
                raise ValueError("Links after Data (not canonical dag-pb)")
            assert isinstance(value, memoryview)
            links.append(_decode_link(value))
        elif field == _NODE_DATA and wire_type == pb.LEN:
            if data is not None:
                raise ValueError("duplicate Data field")
            assert isinstance(value, memoryview)
            data = value
        else:
            raise ValueError(f"unexpected field {field} (wire type {wire_type}) in PBNode")
    return PBNode(tuple(links), data)


def _decode_link(body: memoryview) -> PBLink:
    cid: CID | None = None
    name = ""
    tsize = 0
    for field, wire_type, value in pb.iter_fields(body):
        if field == _LINK_HASH and wire_type == pb.LEN:
            assert isinstance(value, memoryview)
            cid = CID.from_bytes(bytes(value))
        elif field == _LINK_NAME and wire_type == pb.LEN:
            assert isinstance(value, memoryview)
            name = bytes(value).decode("utf-8")
        elif field == _LINK_TSIZE and wire_type == pb.VARINT:
            assert isinstance(value, int)
            tsize = value
        else:
            raise ValueError(f"unexpected field {field} (wire type {wire_type}) in PBLink")
    if cid is None:
        raise ValueError("PBLink without Hash")
    return PBLink(cid, tsize, name)
