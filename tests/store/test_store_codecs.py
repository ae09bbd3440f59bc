"""Encodings and DAG shape: properties checked with hypothesis, plus values from the specs."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.store import CID, InvalidCIDError
from fedledger.store.builder import DagBuilder
from fedledger.store.cid import b58decode, b58encode, decode_varint, encode_varint
from fedledger.store.dagpb import PBLink, decode_node, encode_node
from fedledger.store.local import LocalStore


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_varint_round_trip(n: int) -> None:
    encoded = encode_varint(n)
    assert decode_varint(encoded) == (n, len(encoded))


def test_varint_spec_values() -> None:
    # examples from the multiformats unsigned-varint spec
    assert [encode_varint(n).hex() for n in (1, 127, 128, 255, 300, 16384)] == [
        "01",
        "7f",
        "8001",
        "ff01",
        "ac02",
        "808001",
    ]


@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


def test_base58_known_value() -> None:
    # the multihash of the empty UnixFS file and its well-known CIDv0 (Kubo's test suite)
    mh = bytes.fromhex("1220") + hashlib.sha256(bytes.fromhex("0a0408021800")).digest()
    assert b58encode(mh) == "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"


@given(st.binary(), st.sampled_from([0x70, 0x55]))
def test_cidv1_string_round_trip(data: bytes, codec: int) -> None:
    cid = CID.for_block(data, version=1, codec=codec)
    assert CID.parse(str(cid)) == cid
    assert CID.from_bytes(cid.to_bytes()) == cid
    expected = "b" + base64.b32encode(cid.to_bytes()).decode().lower().rstrip("=")
    assert str(cid) == expected


@pytest.mark.parametrize(
    "bad", ["", "Qm", "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQ0", "bafy", "bad!", "x" * 46, "zQm"]
)
def test_malformed_cids_raise(bad: str) -> None:
    with pytest.raises(InvalidCIDError):
        CID.parse(bad)


def test_unsupported_hash_is_refused() -> None:
    # a CIDv1 raw with an identity multihash (0x00): we cannot verify it, so we refuse it
    binary = bytes([0x01, 0x55, 0x00, 0x03]) + b"abc"
    with pytest.raises(InvalidCIDError):
        CID.parse("b" + base64.b32encode(binary).decode().lower().rstrip("="))


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.integers(0, 2**40)), max_size=5), st.binary())
def test_dagpb_round_trip(links: list[tuple[bytes, int]], data: bytes) -> None:
    pb_links = [PBLink(CID.for_block(b, version=1, codec=0x55), size) for b, size in links]
    node = decode_node(encode_node(pb_links, data))
    assert list(node.links) == pb_links
    assert node.data is not None and bytes(node.data) == data


def _depths(store: LocalStore, cid: CID, depth: int = 0) -> list[int]:
    node = decode_node(store.get_block(cid))
    if not node.links:
        return [depth]
    return [d for link in node.links for d in _depths(store, link.cid, depth + 1)]


@settings(max_examples=25, deadline=None)
@given(n_chunks=st.integers(min_value=1, max_value=40), tail=st.integers(min_value=0, max_value=7))
def test_balanced_layout_with_small_parameters(
    n_chunks: int, tail: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Scaled down (8-byte chunks, 3 links per node): all leaves at one depth, the smallest depth
    that fits, nodes full from the left, and the bytes come back in order."""
    store = LocalStore(tmp_path_factory.mktemp("layout"), durable=False)
    data = bytes(range(256)) * 2
    data = data[: 8 * n_chunks + tail]
    builder = DagBuilder(lambda cid, parts: store.put_block(cid, b"".join(parts)), chunk_size=8, max_links=3)
    for i in range(0, len(data), 8):
        builder.add_chunk(data[i : i + 8])
    root = builder.finish().cid
    leaves = max(1, -(-len(data) // 8))
    depths = _depths(store, root)
    assert len(depths) == leaves
    assert len(set(depths)) == 1
    depth = depths[0]
    assert 3**depth >= leaves and (depth == 0 or 3 ** (depth - 1) < leaves)
    assert store.read_bytes(str(root)) == data
