"""The ContentStore interface and everything that can be built on plain block reads and writes.

Backends implement a handful of block-level primitives (read a block, write a block, pins);
file-level reading lives here once: it walks the UnixFS DAG, checks every block against its CID
before a single byte of it is handed out, and checks the sizes the nodes announce. So a Kubo
daemon is trusted no more than a local disk.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from fedledger.store import dagpb, unixfs
from fedledger.store.builder import ProgressCallback, Source
from fedledger.store.cid import CID, RAW, as_cid
from fedledger.store.errors import (
    BlockNotFoundError,
    ContentMismatchError,
    MalformedDagError,
    StoreError,
)


@dataclass(frozen=True, slots=True)
class Stat:
    """What a store knows about a stored file without reading all of it."""

    cid: str
    size: int  # bytes of the file
    cumulative_size: int  # bytes of all its blocks (Kubo's CumulativeSize)
    leaf: bool  # the whole file is a single block
    pinned: bool


class ContentStore(ABC):
    """A content-addressed store of files (UnixFS DAGs), addressed by CID strings.

    Subclasses provide the block primitives; ``put`` may be overridden when the backend builds
    DAGs itself (Kubo's ``add``).
    """

    #: human-readable location for messages ("local:/path", "kubo:/ip4/...")
    location: str = "?"

    # -- block primitives (backends) ---------------------------------------------------------

    @abstractmethod
    def _read_block(self, cid: CID) -> bytes:
        """The stored bytes of a block, unverified; raise BlockNotFoundError when absent."""

    @abstractmethod
    def put_block(self, cid: str | CID, data: bytes) -> None:
        """Store one block under its CID (implementations verify ``data`` against ``cid``)."""

    @abstractmethod
    def has_block(self, cid: str | CID) -> bool:
        """True when the block is available without fetching it from elsewhere."""

    @abstractmethod
    def put(
        self,
        source: Source,
        *,
        cid_version: int = 0,
        pin: bool = True,
        progress: ProgressCallback | None = None,
    ) -> str:
        """Add a file (bytes, a path or a binary stream); returns its CID as ``ipfs add`` would."""

    @abstractmethod
    def pin(self, cid: str | CID) -> None:
        """Protect a file's DAG from garbage collection (idempotent)."""

    @abstractmethod
    def unpin(self, cid: str | CID) -> None:
        """Remove a pin (idempotent: unpinning what is not pinned does nothing)."""

    @abstractmethod
    def is_pinned(self, cid: str | CID) -> bool: ...

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release connections or handles (no-op by default)."""

    def __enter__(self) -> ContentStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- verified reads ----------------------------------------------------------------------

    def get_block(self, cid: str | CID) -> bytes:
        """A block's bytes, verified against its CID (ContentMismatchError otherwise)."""
        cid = as_cid(cid)
        data = self._read_block(cid)
        if not cid.matches(data):
            raise ContentMismatchError(str(cid), f"stored block in {self.location} hashes differently")
        return data

    def has(self, cid: str | CID) -> bool:
        """True when the file's root block is here; :meth:`get` verifies the rest as it reads."""
        return self.has_block(cid)

    def get(self, cid: str | CID) -> Iterator[bytes]:
        """The file's bytes in order, one leaf at a time; each block is verified before it is yielded.

        Raises ContentMismatchError (naming ``cid`` and the bad block), BlockNotFoundError or
        MalformedDagError, possibly after earlier chunks were yielded: use :meth:`get_to_path`
        when a half-written result must never be seen.
        """
        root = as_cid(cid)  # parsed here, so a bad CID fails at the call, not at the first read
        return self._walk(root, root, None)

    def open(self, cid: str | CID) -> BinaryIO:
        """A readable binary stream over :meth:`get` (same verification, same errors)."""
        return io.BufferedReader(_IteratorRaw(self.get(cid)), buffer_size=1 << 20)

    def read_bytes(self, cid: str | CID, *, max_size: int | None = None) -> bytes:
        """The whole file in memory: for small files; ``max_size`` guards against surprises."""
        if max_size is not None:
            size = self.stat(cid).size
            if size > max_size:
                raise StoreError(f"{cid} holds {size} bytes, more than max_size={max_size}")
        return b"".join(self.get(cid))

    def get_to_path(self, cid: str | CID, path: str | Path, *, progress: ProgressCallback | None = None) -> int:
        """Write the file to ``path`` atomically; returns its size.

        Data goes to a temporary file next to ``path`` that is renamed over it only after every
        block was verified, so a mismatch or crash leaves no partial ``path`` behind.
        """
        target = Path(path)
        directory = target.parent if str(target.parent) else Path(".")
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".partial")
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.get(cid):
                    out.write(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return written

    def stat(self, cid: str | CID) -> Stat:
        """Size and cumulative size from the root block alone (verified), plus the pin state."""
        root = as_cid(cid)
        block = self.get_block(root)
        if root.codec == RAW:
            return Stat(str(root), len(block), len(block), True, self.is_pinned(root))
        node, data = self._decode_file_node(root, root, block)
        size = data.filesize if data.filesize is not None else len(data.data)
        cumulative = len(block) + sum(link.tsize for link in node.links)
        return Stat(str(root), size, cumulative, not node.links, self.is_pinned(root))

    def iter_dag_blocks(self, cid: str | CID) -> Iterator[tuple[CID, bytes]]:
        """Every block of the DAG once, depth-first in link order (the order CAR export uses)."""
        root = as_cid(cid)
        seen: set[bytes] = set()
        stack = [root]
        while stack:
            current = stack.pop()
            if current.multihash in seen:
                continue
            seen.add(current.multihash)
            block = self._get_block_in(root, current)
            yield current, block
            if current.codec != RAW:
                try:
                    node = dagpb.decode_node(block)
                except ValueError as exc:
                    raise MalformedDagError(str(current), f"{exc} (in the DAG of {root})") from None
                stack.extend(link.cid for link in reversed(node.links))

    # -- internals ---------------------------------------------------------------------------

    def _get_block_in(self, root: CID, cid: CID) -> bytes:
        """get_block, with errors that also name the file being read."""
        try:
            return self.get_block(cid)
        except ContentMismatchError:
            if cid == root:
                raise
            raise ContentMismatchError(str(root), f"block {cid} hashes differently") from None
        except BlockNotFoundError as exc:
            if cid == root:
                raise
            raise BlockNotFoundError(str(cid), f"needed by {root}") from exc

    def _decode_file_node(self, root: CID, cid: CID, block: bytes) -> tuple[dagpb.PBNode, unixfs.UnixFSData]:
        try:
            node = dagpb.decode_node(block)
            if node.data is None:
                raise ValueError("PBNode without Data")
            data = unixfs.decode(node.data)
        except ValueError as exc:
            raise MalformedDagError(str(cid), f"{exc} (in the DAG of {root})") from None
        if data.type not in (unixfs.FILE, unixfs.RAW):
            raise MalformedDagError(str(cid), f"UnixFS type {data.type_name}; only files can be read")
        if node.links and len(data.blocksizes) != len(node.links):
            raise MalformedDagError(
                str(cid), f"{len(node.links)} links but {len(data.blocksizes)} blocksizes (in {root})"
            )
        return node, data

    def _walk(self, root: CID, cid: CID, expected: int | None) -> Iterator[bytes]:
        block = self._get_block_in(root, cid)
        if cid.codec == RAW:
            produced = len(block)
            yield block
        else:
            node, data = self._decode_file_node(root, cid, block)
            produced = 0
            if data.data:
                produced += len(data.data)
                yield data.data
            for link, size in zip(node.links, data.blocksizes, strict=True):
                for chunk in self._walk(root, link.cid, size):
                    produced += len(chunk)
                    yield chunk
            if data.filesize is not None and data.filesize != produced:
                raise MalformedDagError(str(cid), f"filesize {data.filesize} but {produced} bytes below it (in {root})")
        if expected is not None and produced != expected:
            raise MalformedDagError(str(cid), f"parent announces {expected} bytes, node holds {produced} (in {root})")


class _IteratorRaw(io.RawIOBase):
    """Adapts a chunk iterator to the RawIOBase protocol so it can be wrapped in a BufferedReader."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
