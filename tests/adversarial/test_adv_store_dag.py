"""Hostile DAGs and CAR files against the real embedded store: bounded, iterative, nothing half-done.

A member controls the bytes behind the CID it submits. A small DAG that links one block many
times announces terabytes; a very deep one used to exhaust Python's stack. Every reader (the
aggregator, nodes, the audit) must get a StoreError naming the limit before streaming anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fedledger.store import dagpb, unixfs
from fedledger.store.car import car_header, export_car, import_car
from fedledger.store.cid import CID, DAG_PB, RAW, encode_varint
from fedledger.store.errors import (
    BlockNotFoundError,
    ContentMismatchError,
    InvalidCarError,
    LimitExceededError,
    MalformedDagError,
    StoreError,
)
from fedledger.store.local import LocalStore

TB = 10**12


def _put_node(store: LocalStore, links: list[tuple[CID, int, int]], filesize: int | None = None) -> tuple[CID, int]:
    """Store an inner UnixFS file node over (child cid, child file bytes, child tsize) links."""
    sizes = [size for _, size, _ in links]
    total = sum(sizes) if filesize is None else filesize
    block = dagpb.encode_node([dagpb.PBLink(cid, tsize) for cid, _, tsize in links], unixfs.inner_data(total, sizes))
    cid = CID.for_block(block, version=1, codec=DAG_PB)
    store.put_block(cid, block)
    return cid, len(block)


def _amplifying_dag(store: LocalStore) -> tuple[CID, int]:
    """1 KB leaf, then 4 levels that each link the level below 1000 times: 1 TB announced."""
    leaf = b"L" * 1000
    cid = CID.for_block(leaf, version=1, codec=RAW)
    store.put_block(cid, leaf)
    size, tsize = len(leaf), len(leaf)
    for _ in range(3):
        cid, block_len = _put_node(store, [(cid, size, tsize)] * 1000)
        size, tsize = size * 1000, block_len + 1000 * tsize
    return cid, size


def _deep_dag(store: LocalStore, depth: int) -> CID:
    leaf = b"x"
    cid = CID.for_block(leaf, version=1, codec=RAW)
    store.put_block(cid, leaf)
    for _ in range(depth):
        cid, _ = _put_node(store, [(cid, 1, 1)])
    return cid


def _stored_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "blocks").rglob("*.data"))


def test_a_small_dag_announcing_a_terabyte_is_refused_before_one_byte_is_streamed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", durable=False)
    root, size = _amplifying_dag(store)
    assert size == TB and _stored_bytes(tmp_path / "s") < 200_000
    assert store.stat(root).size == TB

    chunks = store.get(root)  # the default limit alone refuses it
    with pytest.raises(LimitExceededError, match="max_size"):
        next(chunks)
    with pytest.raises(LimitExceededError, match=r"max_size=1000000\b") as caught:
        next(store.get(root, max_size=1_000_000))
    assert caught.value.limit == "max_size" and str(root) in str(caught.value)
    out = tmp_path / "out" / "model.bin"
    with pytest.raises(StoreError, match="max_size"):
        store.get_to_path(root, out, max_size=50 << 20)
    assert not out.parent.exists()  # no partial file, no temporary, not even the folder it made
    with pytest.raises(LimitExceededError):
        store.read_bytes(root, max_size=4096)
    with pytest.raises(LimitExceededError):
        store.open(root, max_size=4096).read(1)


def test_a_dag_1500_levels_deep_is_refused_by_depth_not_by_recursion(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", durable=False)
    root = _deep_dag(store, 1500)
    with pytest.raises(LimitExceededError, match="max_depth=64"):
        store.read_bytes(root)
    with pytest.raises(LimitExceededError, match="max_depth=64"):
        list(store.iter_dag_blocks(root))
    # a reader that accepts the depth walks it iteratively: no RecursionError at any depth
    assert store.read_bytes(root, max_depth=2000) == b"x"
    assert len(list(store.iter_dag_blocks(root, max_depth=2000))) == 1501


def test_empty_or_one_byte_leaves_linked_a_million_times_run_out_of_block_budget(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", durable=False)
    for leaf in (b"", b"z"):
        cid = CID.for_block(leaf, version=1, codec=RAW)
        store.put_block(cid, leaf)
        size = len(leaf)
        for _ in range(3):  # 10^9 leaf visits, announcing 0 bytes or 1 GB of one-byte leaves
            cid, _ = _put_node(store, [(cid, size, 1)] * 1000)
            size *= 1000
        started = time.monotonic()
        with pytest.raises(LimitExceededError, match="blocks"):
            store.read_bytes(cid, max_size=2 << 30)
        assert time.monotonic() - started < 60  # seconds, on a loaded machine: not 10^9 block reads


def test_sizes_that_lie_are_caught_before_the_lie_is_streamed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", durable=False)
    leaf = b"y" * 100
    leaf_cid = CID.for_block(leaf, version=1, codec=RAW)
    store.put_block(leaf_cid, leaf)
    # the root claims a 100-byte file but its blocksizes add up to a terabyte
    lying_root, _ = _put_node(store, [(leaf_cid, TB // 2, 100)] * 2, filesize=100)
    with pytest.raises(MalformedDagError, match="filesize 100"):
        next(store.get(lying_root))
    # consistent root, but the child is not what the root announced
    big_claim, _ = _put_node(store, [(leaf_cid, 10**9, 100)])
    chunks = store.get(big_claim)
    with pytest.raises(MalformedDagError, match="announces 1000000000"):
        next(chunks)


def test_honest_files_still_read_within_their_limits(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s", durable=False)
    data = bytes(range(256)) * 4096  # 1 MiB: four leaves
    cid = store.put(data)
    assert store.read_bytes(cid, max_size=len(data)) == data
    with pytest.raises(LimitExceededError):
        store.read_bytes(cid, max_size=len(data) - 1)
    assert store.get_to_path(cid, tmp_path / "new" / "dir" / "f.bin", max_size=len(data)) == len(data)
    assert (tmp_path / "new" / "dir" / "f.bin").read_bytes() == data


# -- CAR import: checked whole, then written ---------------------------------------------------


def _section(cid: CID, data: bytes) -> bytes:
    body = cid.to_bytes() + data
    return encode_varint(len(body)) + body


def _blocks_in(root: Path) -> list[Path]:
    return list((root / "blocks").rglob("*.data")) if (root / "blocks").exists() else []


def test_car_with_a_wrong_block_writes_nothing(tmp_path: Path) -> None:
    good = [b"a" * 500, b"b" * 500]
    cids = [CID.for_block(b, version=1, codec=RAW) for b in good]
    car = tmp_path / "wrong.car"
    car.write_bytes(car_header([cids[0]]) + _section(cids[0], good[0]) + _section(cids[1], b"c" * 500))
    target = LocalStore(tmp_path / "t")
    with pytest.raises(ContentMismatchError, match=str(cids[1])):
        import_car(target, car)
    assert _blocks_in(tmp_path / "t") == [] and target.pins() == []


def test_car_with_an_oversized_block_writes_nothing(tmp_path: Path) -> None:
    small = b"s" * 10
    small_cid = CID.for_block(small, version=1, codec=RAW)
    huge = b"h" * (5 << 20)
    huge_cid = CID.for_block(huge, version=1, codec=RAW)
    car = tmp_path / "huge.car"
    car.write_bytes(car_header([small_cid]) + _section(small_cid, small) + _section(huge_cid, huge))
    target = LocalStore(tmp_path / "t")
    with pytest.raises(InvalidCarError, match="limit"):
        import_car(target, car)
    assert _blocks_in(tmp_path / "t") == []


def _exported_car(tmp_path: Path) -> tuple[LocalStore, str, Path]:
    """A 1 MiB file (four leaves and a root) in a store, and its CAR."""
    source = LocalStore(tmp_path / "a")
    cid = source.put(bytes(range(256)) * 4096)
    car = tmp_path / "full.car"
    export_car(source, cid, car)
    return source, cid, car


def test_truncated_car_writes_nothing(tmp_path: Path) -> None:
    _, _, car = _exported_car(tmp_path)
    data = car.read_bytes()
    (tmp_path / "cut.car").write_bytes(data[: len(data) - 5000])
    target = LocalStore(tmp_path / "t")
    with pytest.raises(InvalidCarError, match="truncated"):
        import_car(target, tmp_path / "cut.car")
    assert _blocks_in(tmp_path / "t") == []


def test_car_missing_a_block_or_too_large_writes_nothing(tmp_path: Path) -> None:
    source, cid, car = _exported_car(tmp_path)
    target = LocalStore(tmp_path / "t")
    with pytest.raises(LimitExceededError, match="max_size=1000"):
        import_car(target, car, max_size=1000)
    assert _blocks_in(tmp_path / "t") == []
    # drop the last section: the DAG is incomplete, so nothing of it is written
    data = car.read_bytes()
    blocks = list(source.iter_dag_blocks(cid))
    cut = len(data) - len(_section(*blocks[-1]))
    (tmp_path / "holey.car").write_bytes(data[:cut])
    with pytest.raises(BlockNotFoundError):
        import_car(target, tmp_path / "holey.car")
    assert _blocks_in(tmp_path / "t") == [] and target.pins() == []
    assert import_car(target, car) == [cid]  # the honest CAR still imports
    assert target.read_bytes(cid) == bytes(range(256)) * 4096


def test_deep_dag_in_a_car_is_refused_before_writing(tmp_path: Path) -> None:
    source = LocalStore(tmp_path / "a", durable=False)
    root = _deep_dag(source, 200)
    car = tmp_path / "deep.car"
    with pytest.raises(LimitExceededError, match="max_depth"):
        export_car(source, root, car)
    assert not car.exists()
    export_car(source, root, car, max_depth=300)  # export walks as deep as its caller allows
    target = LocalStore(tmp_path / "t")
    with pytest.raises(LimitExceededError, match="max_depth"):
        import_car(target, car)
    assert _blocks_in(tmp_path / "t") == []
