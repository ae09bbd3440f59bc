"""Turns a byte stream into a UnixFS file DAG exactly as ``ipfs add`` does by default.

Kubo's defaults: fixed 256 KiB chunks, balanced layout, at most 174 links per node, CIDv0
(dag-pb leaves); or, with ``--cid-version 1`` (which turns on ``--raw-leaves``), raw leaves
and CIDv1 inner nodes. Kubo grows its balanced tree top-down; building it bottom-up, closing a
node as soon as it has 174 children, yields the same tree (leaves all at one depth, every node
full except along the right edge, depth the smallest that fits) while holding only one chunk
and at most 174 links per level in memory, so a 1 GiB file streams in bounded memory.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fedledger.store import dagpb, unixfs
from fedledger.store.cid import CID, DAG_PB, RAW, SHA2_256

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174

BlockSink = Callable[[CID, Sequence[bytes]], None]
"""Receives every block the builder produces (children before their parents), as pieces whose
concatenation is the block: a leaf's few header bytes and its chunk are not copied into one buffer."""

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just consumed (for progress bars)."""

Source = bytes | bytearray | memoryview | BinaryIO | Path | str


@dataclass(frozen=True, slots=True)
class _Child:
    cid: CID
    tsize: int  # block length plus the children's tsize (what the parent's link records)
    filesize: int  # file bytes below this node (what the parent's blocksizes record)


@dataclass(frozen=True, slots=True)
class BuildResult:
    cid: CID
    size: int  # file bytes
    cumulative_size: int  # bytes of all blocks, as Kubo's CumulativeSize
    blocks: int


class DagBuilder:
    """Incremental builder: feed chunks with :meth:`add_chunk`, then call :meth:`finish`.

    Every chunk but the last must be exactly ``chunk_size`` bytes, as Kubo's size splitter makes
    them; :func:`iter_chunks` produces such chunks from any stream.
    """

    def __init__(
        self,
        sink: BlockSink | None = None,
        *,
        cid_version: int = 0,
        chunk_size: int = CHUNK_SIZE,
        max_links: int = MAX_LINKS,
    ) -> None:
        if cid_version not in (0, 1):
            raise ValueError(f"cid_version must be 0 or 1, not {cid_version!r}")
        if max_links < 2:
            raise ValueError("max_links must be at least 2")
        self._sink = sink
        self._version = cid_version
        self._raw_leaves = cid_version == 1  # what `ipfs add --cid-version 1` does
        self._chunk_size = chunk_size
        self._max_links = max_links
        self._levels: list[list[_Child]] = [[]]
        self._short_chunk_seen = False
        self._size = 0
        self._blocks = 0
        self._finished = False

    def add_chunk(self, chunk: bytes) -> None:
        if self._finished:
            raise RuntimeError("builder already finished")
        if len(chunk) > self._chunk_size:
            raise ValueError(f"chunk of {len(chunk)} bytes exceeds the chunk size {self._chunk_size}")
        if self._short_chunk_seen:
            raise ValueError("only the last chunk may be shorter than the chunk size")
        if len(chunk) < self._chunk_size:
            self._short_chunk_seen = True
        self._size += len(chunk)
        self._push(0, self._leaf(chunk))

    def finish(self) -> BuildResult:
        """Close the partly filled nodes along the right edge and return the root."""
        if self._finished:
            raise RuntimeError("builder already finished")
        if self._size == 0 and not self._levels[0] and len(self._levels) == 1:
            self._push(0, self._leaf(b""))  # Kubo stores the empty file as one empty leaf
        self._finished = True
        level = 0
        while True:
            pending = self._levels[level]
            higher = any(self._levels[level + 1 :])
            if len(pending) == 1 and not higher:
                root = pending[0]
                return BuildResult(root.cid, self._size, root.tsize, self._blocks)
            if pending:
                self._levels[level] = []
                self._push(level + 1, self._inner(pending))
            level += 1

    # internals

    def _push(self, level: int, child: _Child) -> None:
        while True:
            if level == len(self._levels):
                self._levels.append([])
            siblings = self._levels[level]
            siblings.append(child)
            if len(siblings) < self._max_links:
                return
            self._levels[level] = []
            child = self._inner(siblings)
            level += 1

    def _emit(self, version: int, codec: int, parts: Sequence[bytes]) -> CID:
        digest = hashlib.sha256()
        for part in parts:
            digest.update(part)
        cid = CID(version, codec, bytes((SHA2_256, 32)) + digest.digest())
        self._blocks += 1
        if self._sink is not None:
            self._sink(cid, parts)
        return cid

    def _leaf(self, chunk: bytes) -> _Child:
        if self._raw_leaves:
            cid = self._emit(1, RAW, (chunk,))
            return _Child(cid, len(chunk), len(chunk))
        parts = unixfs.leaf_block_parts(chunk)
        cid = self._emit(0, DAG_PB, parts)
        return _Child(cid, sum(len(p) for p in parts), len(chunk))

    def _inner(self, children: list[_Child]) -> _Child:
        filesize = sum(c.filesize for c in children)
        data = unixfs.inner_data(filesize, [c.filesize for c in children])
        links = [dagpb.PBLink(c.cid, c.tsize) for c in children]
        block = dagpb.encode_node(links, data)
        cid = self._emit(self._version, DAG_PB, (block,))
        return _Child(cid, len(block) + sum(c.tsize for c in children), filesize)


def iter_chunks(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Full ``chunk_size`` chunks from a stream (short reads are topped up), the last may be short."""
    while True:
        chunk = stream.read(chunk_size)
        if not chunk:
            return
        while len(chunk) < chunk_size:
            more = stream.read(chunk_size - len(chunk))
            if not more:
                yield chunk
                return
            chunk += more
        yield chunk


def open_source(source: Source) -> BinaryIO:
    """A binary stream over any accepted source (the caller closes it)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(source)
    if isinstance(source, str | Path):
        return open(source, "rb", buffering=0)
    if hasattr(source, "read"):
        return source
    raise TypeError(f"cannot read content from {type(source).__name__}; pass bytes, a path or a binary stream")


def build_dag(
    source: Source,
    sink: BlockSink | None = None,
    *,
    cid_version: int = 0,
    progress: ProgressCallback | None = None,
) -> BuildResult:
    """Chunk ``source`` and build its DAG, handing every block to ``sink`` (None: only compute the CID)."""
    builder = DagBuilder(sink, cid_version=cid_version)
    stream = open_source(source)
    try:
        for chunk in iter_chunks(stream):
            builder.add_chunk(chunk)
            if progress is not None:
                progress(len(chunk))
    finally:
        if stream is not source:
            stream.close()
    return builder.finish()


def compute_cid(source: Source, *, cid_version: int = 0) -> str:
    """The CID ``ipfs add --only-hash`` would print for ``source``, without storing anything."""
    return str(build_dag(source, None, cid_version=cid_version).cid)
