"""The embedded store on real files: round trips, verification, corruption, pins, concurrency, memory."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fedledger.store import (
    BlockNotFoundError,
    ContentMismatchError,
    InvalidCIDError,
    LocalStore,
    StoreError,
    open_store,
)
from fedledger.store.cid import CID
from fedledger.store.dagpb import decode_node


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def _block_files(store: LocalStore) -> list[Path]:
    return sorted((store.root / "blocks").glob("*/*.data"))


@pytest.mark.parametrize("name", ["empty", "one-byte", "chunk", "chunk-plus-1", "1MB", "deep-175-chunks"])
@pytest.mark.parametrize("cid_version", [0, 1])
def test_round_trip(
    name: str, cid_version: int, tmp_path: Path, reference_files: dict[str, Path], store: LocalStore
) -> None:
    source = reference_files[name]
    cid = store.put(source, cid_version=cid_version)
    out = tmp_path / "out.bin"
    assert store.get_to_path(cid, out) == source.stat().st_size
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()
    assert store.has(cid)
    assert store.is_pinned(cid)


def test_put_accepts_bytes_streams_and_paths_alike(store: LocalStore, reference_files: dict[str, Path]) -> None:
    source = reference_files["1MB"]
    data = source.read_bytes()
    by_path = store.put(source)
    assert store.put(data) == by_path
    assert store.put(io.BytesIO(data)) == by_path
    assert store.put(str(source)) == by_path
    assert store.read_bytes(by_path) == data
    assert store.open(by_path).read() == data


def test_stat_reports_file_and_cumulative_sizes(store: LocalStore, reference_files: dict[str, Path]) -> None:
    source = reference_files["deep-175-chunks"]
    cid = store.put(source)
    stat = store.stat(cid)
    assert stat.size == source.stat().st_size
    # cumulative size = every block's length, computed here from the files on disk
    assert stat.cumulative_size == sum(p.stat().st_size for p in _block_files(store))
    assert stat.pinned and not stat.leaf
    small = store.stat(store.put(b"x", pin=False))
    assert (small.size, small.leaf, small.pinned) == (1, True, False)


def test_same_bytes_share_blocks_across_cid_versions(store: LocalStore) -> None:
    cid0 = store.put(b"a" * 10)
    cid1 = store.put(b"a" * 10, cid_version=1)
    assert cid0.startswith("Qm") and cid1.startswith("bafkrei")
    assert len(_block_files(store)) == 2  # a dag-pb leaf and a raw block


def test_flipped_byte_in_a_leaf_is_detected_and_leaves_no_output(
    tmp_path: Path, store: LocalStore, reference_files: dict[str, Path]
) -> None:
    cid = store.put(reference_files["1MB"])
    root_path = store.block_path(cid)
    leaf = next(p for p in _block_files(store) if p != root_path)
    raw = bytearray(leaf.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    leaf.write_bytes(bytes(raw))

    out = tmp_path / "out.bin"
    with pytest.raises(ContentMismatchError) as err:
        store.get_to_path(cid, out)
    assert cid in str(err.value)
    assert err.value.cid == cid
    assert not out.exists()
    assert not list(tmp_path.glob(".out.bin.*"))  # no temporary left behind either
    with pytest.raises(ContentMismatchError):
        b"".join(store.get(cid))


def test_flipped_byte_in_the_root_is_detected(tmp_path: Path, store: LocalStore) -> None:
    cid = store.put(os.urandom(3 * 262144))
    root = store.block_path(cid)
    raw = bytearray(root.read_bytes())
    raw[-1] ^= 0xFF
    root.write_bytes(bytes(raw))
    with pytest.raises(ContentMismatchError, match=cid):
        store.stat(cid)
    with pytest.raises(ContentMismatchError, match=cid):
        store.get_to_path(cid, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_existing_output_survives_a_failed_get(tmp_path: Path, store: LocalStore) -> None:
    cid = store.put(os.urandom(300_000))
    for block in _block_files(store):
        block.write_bytes(block.read_bytes()[:-1] + b"\0")
    out = tmp_path / "model.safetensors"
    out.write_bytes(b"previous version")
    with pytest.raises(ContentMismatchError):
        store.get_to_path(cid, out)
    assert out.read_bytes() == b"previous version"


def test_putting_the_content_again_repairs_a_corrupted_block(store: LocalStore) -> None:
    data = os.urandom(600_000)
    cid = store.put(data)
    for block in _block_files(store):
        block.write_bytes(b"garbage")
    with pytest.raises(ContentMismatchError):
        store.read_bytes(cid)
    assert store.put(data) == cid
    assert store.read_bytes(cid) == data


def test_missing_block_names_block_and_file(store: LocalStore) -> None:
    cid = store.put(os.urandom(600_000))
    leaf_cid = decode_node(store.get_block(cid)).links[1].cid
    store.block_path(leaf_cid).unlink()
    with pytest.raises(BlockNotFoundError) as err:
        store.read_bytes(cid)
    assert str(leaf_cid) in str(err.value) and cid in str(err.value)
    with pytest.raises(BlockNotFoundError):
        store.read_bytes("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")


def test_bad_cids_are_rejected_before_anything_is_read(store: LocalStore) -> None:
    for bad in ["", "Qm123", "hello", "bafy!!", "zzzz"]:
        with pytest.raises(InvalidCIDError):
            store.get(bad)
    with pytest.raises(InvalidCIDError):
        store.pin("not-a-cid")


def test_put_block_refuses_bytes_that_do_not_match(store: LocalStore) -> None:
    cid = CID.for_block(b"right", version=1, codec=0x55)
    with pytest.raises(ContentMismatchError):
        store.put_block(cid, b"wrong")
    assert not store.has_block(cid)


def test_pins_persist_and_unpin_is_idempotent(tmp_path: Path) -> None:
    first = LocalStore(tmp_path / "s")
    cid = first.put(b"pinned", pin=False)
    assert not first.is_pinned(cid)
    first.pin(cid)
    second = LocalStore(tmp_path / "s")
    assert second.is_pinned(cid) and second.pins() == [cid]
    second.unpin(cid)
    second.unpin(cid)
    assert not first.is_pinned(cid)
    with pytest.raises(BlockNotFoundError):
        first.pin("QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH")


def test_read_bytes_respects_max_size(store: LocalStore) -> None:
    cid = store.put(b"x" * 1000)
    with pytest.raises(StoreError, match="max_size"):
        store.read_bytes(cid, max_size=999)
    assert len(store.read_bytes(cid, max_size=1000)) == 1000


def test_open_store_specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(open_store(f"local:{tmp_path / 'a'}"), LocalStore)
    assert isinstance(open_store(str(tmp_path / "b")), LocalStore)
    monkeypatch.delenv("FEDLEDGER_STORE", raising=False)
    monkeypatch.setenv("FEDLEDGER_HOME", str(tmp_path / "home"))
    default = open_store()
    assert isinstance(default, LocalStore) and default.root == tmp_path / "home" / "store"
    with pytest.raises(StoreError, match="unknown store spec"):
        open_store("s3:bucket")


# -- two processes at once -----------------------------------------------------------------------


def _add_in_process(root: str, source: str, barrier: object, queue: object) -> None:
    store = LocalStore(root)
    barrier.wait()  # type: ignore[attr-defined]
    cid = store.put(Path(source))
    queue.put(cid)  # type: ignore[attr-defined]


def test_two_processes_adding_the_same_content_at_once(tmp_path: Path, reference_files: dict[str, Path]) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(reference_files["1MB"].read_bytes() * 5)
    root = tmp_path / "shared-store"
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_add_in_process, args=(str(root), str(source), barrier, queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    cids = {queue.get(timeout=5), queue.get(timeout=5)}
    assert len(cids) == 1
    cid = cids.pop()
    store = LocalStore(root)
    assert store.read_bytes(cid) == source.read_bytes()
    assert store.pins() == [cid]
    assert not [p for p in root.rglob(".*") if p.name != "pins.lock"]  # no temporaries left


# -- memory stays bounded -----------------------------------------------------------------------

_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from fedledger.store import LocalStore
    store = LocalStore(sys.argv[1], durable=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cid = store.put(Path(sys.argv[2]))
    store.get_to_path(cid, Path(sys.argv[3]))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((after - before) * 1024)
    """
)


def test_peak_memory_stays_bounded_for_a_large_file(tmp_path: Path) -> None:
    """Adding and reading 160 MiB raises peak RSS by far less than the file's size."""
    size = 160 * 1024 * 1024
    source = tmp_path / "big.bin"
    with open(source, "wb") as out:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            out.write(block[i:] + block[:i])
    proc = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(tmp_path / "s"), str(source), str(tmp_path / "out.bin")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    growth = int(proc.stdout.strip().splitlines()[-1])
    assert growth < 48 * 1024 * 1024, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert (tmp_path / "out.bin").stat().st_size == size
