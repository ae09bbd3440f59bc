"""CAR export and import on real files."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from fedledger.store import (
    BlockNotFoundError,
    ContentMismatchError,
    InvalidCarError,
    LocalStore,
    export_car,
    import_car,
)
from fedledger.store.car import car_header
from fedledger.store.cid import CID, decode_varint


@pytest.mark.parametrize("cid_version", [0, 1])
def test_car_round_trip_into_a_fresh_store(cid_version: int, tmp_path: Path, reference_files: dict[str, Path]) -> None:
    source = reference_files["deep-175-chunks"]
    first = LocalStore(tmp_path / "a")
    cid = first.put(source, cid_version=cid_version)
    car = tmp_path / "model.car"
    blocks = export_car(first, cid, car)
    assert blocks == 175 + 2 + 1  # 175 leaves, two level-1 nodes, the root
    second = LocalStore(tmp_path / "b")
    assert import_car(second, car) == [cid]
    assert second.is_pinned(cid)
    assert hashlib.sha256(second.read_bytes(cid)).digest() == hashlib.sha256(source.read_bytes()).digest()


def test_car_header_bytes_match_a_hand_encoding() -> None:
    # DAG-CBOR by hand: map(2) "roots" array(1) tag(42) bytes(0x00 + CID) "version" 1
    cid = CID.parse("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")
    body = b"\xa2\x65roots\x81\xd8\x2a\x58\x23\x00" + cid.multihash + b"\x67version\x01"
    assert car_header([cid]) == bytes([len(body)]) + body


def test_car_blocks_start_with_the_root_and_are_written_once(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    cid = store.put(b"\0" * (3 * 262144))  # three identical leaves: one block
    assert export_car(store, cid, tmp_path / "z.car") == 2


def test_car_with_a_corrupted_block_is_rejected_and_nothing_pinned(
    tmp_path: Path, reference_files: dict[str, Path]
) -> None:
    store = LocalStore(tmp_path / "a")
    cid = store.put(reference_files["1MB"])
    car = tmp_path / "x.car"
    export_car(store, cid, car)
    raw = bytearray(car.read_bytes())
    raw[-1000] ^= 0x40
    car.write_bytes(bytes(raw))
    target = LocalStore(tmp_path / "b")
    with pytest.raises(ContentMismatchError):
        import_car(target, car)
    assert target.pins() == []


def test_car_that_lacks_blocks_fails_on_import(tmp_path: Path, reference_files: dict[str, Path]) -> None:
    store = LocalStore(tmp_path / "a")
    cid = store.put(reference_files["1MB"])
    car = tmp_path / "x.car"
    export_car(store, cid, car)
    data = car.read_bytes()
    # keep the header and the first (root) section only
    header_len, pos = decode_varint(data, 0)
    section_len, pos = decode_varint(data, pos + header_len)
    cut = pos + section_len
    (tmp_path / "partial.car").write_bytes(data[:cut])
    target = LocalStore(tmp_path / "b")
    with pytest.raises(BlockNotFoundError):
        import_car(target, tmp_path / "partial.car")
    assert target.pins() == []


@pytest.mark.parametrize(
    "content",
    [b"", b"\x05hello", b"\x0a\xa2\x65roots\x80\x67version\x01", b"\x3a" + b"\xa2" + b"\x00" * 57],
)
def test_malformed_car_files_give_clear_errors(content: bytes, tmp_path: Path) -> None:
    car = tmp_path / "bad.car"
    car.write_bytes(content)
    with pytest.raises(InvalidCarError):
        import_car(LocalStore(tmp_path / "s"), car)


def test_truncated_car_is_reported(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "a")
    cid = store.put(b"x" * 1000)
    export_car(store, cid, tmp_path / "t.car")
    data = (tmp_path / "t.car").read_bytes()
    (tmp_path / "t.car").write_bytes(data[:-10])
    with pytest.raises(InvalidCarError, match="truncated"):
        import_car(LocalStore(tmp_path / "b"), tmp_path / "t.car")


def test_carv2_wrapping_a_carv1_imports_its_payload(tmp_path: Path) -> None:
    source = LocalStore(tmp_path / "a")
    data = bytes(range(256)) * 4096
    cid = source.put(data)
    export_car(source, cid, tmp_path / "v1.car")
    payload = (tmp_path / "v1.car").read_bytes()
    pragma = bytes.fromhex("0aa16776657273696f6e02")
    padding = b"\0" * 13  # CARv2 lets the payload start anywhere after the header
    offset = len(pragma) + 40 + len(padding)
    header = bytes(16) + struct.pack("<QQQ", offset, len(payload), 0)
    (tmp_path / "v2.car").write_bytes(pragma + header + padding + payload + b"index bytes ignored")
    target = LocalStore(tmp_path / "b")
    assert import_car(target, tmp_path / "v2.car") == [cid]
    assert target.read_bytes(cid) == data
