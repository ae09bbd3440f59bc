"""Arbitrary blocks and arbitrary DAG shapes behind a CID: a read either returns the announced bytes
or raises a StoreError, and never streams more than its limit (hypothesis, real LocalStore)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedledger.store import dagpb, unixfs
from fedledger.store.cid import CID, DAG_PB, RAW
from fedledger.store.errors import StoreError
from fedledger.store.local import LocalStore

_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _read_within(store: LocalStore, root: CID, max_size: int) -> bytes | None:
    """The file's bytes, or None when the store refused it with a StoreError; nothing else escapes."""
    streamed = 0
    chunks: list[bytes] = []
    try:
        for chunk in store.get(root, max_size=max_size, max_depth=8):
            streamed += len(chunk)
            assert streamed <= max_size, "streamed past the limit"
            chunks.append(chunk)
    except StoreError:
        return None
    return b"".join(chunks)


@_settings
@given(block=st.binary(max_size=300), codec=st.sampled_from([DAG_PB, RAW]))
def test_any_root_block_reads_or_raises_a_store_error(block: bytes, codec: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp), durable=False)
        root = CID.for_block(block, version=1, codec=codec)
        store.put_block(root, block)
        data = _read_within(store, root, max_size=1 << 20)
        if codec == RAW:
            assert data == block


# A DAG description: a leaf is bytes; a node is (children, lie in blocksizes, lie in filesize).
_dags = st.recursive(
    st.binary(max_size=40),
    lambda children: st.tuples(
        st.lists(children, min_size=1, max_size=4),
        st.sampled_from([0, 0, 0, 1, -1, 10**12]),
        st.sampled_from([0, 0, 0, 1, 10**12, None]),
    ),
    max_leaves=12,
)


def _build(store: LocalStore, dag: object, raw_leaves: bool) -> tuple[CID, int, bytes]:
    """Store the DAG; returns (cid, size it announces, the bytes it really holds)."""
    if isinstance(dag, bytes):
        if raw_leaves:
            cid = CID.for_block(dag, version=1, codec=RAW)
            store.put_block(cid, dag)
        else:
            block = unixfs.leaf_block(dag)
            cid = CID.for_block(block, version=0, codec=DAG_PB)
            store.put_block(cid, block)
        return cid, len(dag), dag
    assert isinstance(dag, tuple)
    children, size_lie, filesize_lie = dag
    built = [_build(store, child, raw_leaves) for child in children]
    sizes = [size for _, size, _ in built]
    sizes[0] = max(0, sizes[0] + size_lie)
    filesize = sum(sizes) if filesize_lie is None else sum(sizes) + filesize_lie
    block = dagpb.encode_node([dagpb.PBLink(cid, size) for cid, size, _ in built], unixfs.inner_data(filesize, sizes))
    cid = CID.for_block(block, version=1, codec=DAG_PB)
    store.put_block(cid, block)
    return cid, filesize, b"".join(data for _, _, data in built)


@_settings
@given(dag=_dags, raw_leaves=st.booleans(), max_size=st.sampled_from([0, 50, 400, 1 << 20]))
def test_any_dag_shape_reads_exactly_or_raises_a_store_error(dag: object, raw_leaves: bool, max_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp), durable=False)
        root, announced, held = _build(store, dag, raw_leaves)
        data = _read_within(store, root, max_size)
        if data is not None:  # accepted: exactly what the root announced, and within the limit
            assert data == held and len(data) == announced <= max_size
        elif announced == len(held) <= max_size and _honest(dag) and _depth(dag) <= 8:
            raise AssertionError("an honest DAG within the limits was refused")


def _honest(dag: object) -> bool:
    if isinstance(dag, bytes):
        return True
    assert isinstance(dag, tuple)
    children, size_lie, filesize_lie = dag
    return size_lie == 0 and filesize_lie in (0, None) and all(_honest(child) for child in children)


def _depth(dag: object) -> int:
    if isinstance(dag, bytes):
        return 0
    assert isinstance(dag, tuple)
    return 1 + max(_depth(child) for child in dag[0])
