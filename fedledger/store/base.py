"""The ContentStore interface and everything that can be built on plain block reads and writes.

Backends implement a handful of block-level primitives (read a block, write a block, pins);
file-level reading lives here once: it walks the UnixFS DAG, checks every block against its CID
before a single byte of it is handed out, and checks the sizes the nodes announce. So a Kubo
daemon is trusted no more than a local disk.
"""

from __future__ import annotations

import contextlib
import io
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from fedledger.fileio import atomic_writer
from fedledger.store import dagpb, unixfs
from fedledger.store.builder import ProgressCallback, Source
from fedledger.store.cid import CID, RAW, as_cid
from fedledger.store.errors import (
    BlockNotFoundError,
    ContentMismatchError,
    LimitExceededError,
    MalformedDagError,
    StoreError,
)

DEFAULT_MAX_DEPTH = 64  # Kubo's balanced DAG of a 1 TiB file is 3 levels deep; 64 is generous
DEFAULT_MAX_FILE_SIZE = 64 << 30  # callers that know what they expect pass a tighter max_size
# A read may visit BLOCK_BUDGET_BASE blocks plus one per BLOCK_BUDGET_BYTES the root announces:
# Kubo's leaves hold 256 KiB, so honest files use a fraction of it, while a DAG of empty or
# one-byte leaves linked many times (small announced size, endless walk) runs out of it early.
BLOCK_BUDGET_BASE = 4096
BLOCK_BUDGET_BYTES = 32 << 10


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
    #: the largest file a read accepts when the caller gives no ``max_size``
    max_file_size: int = DEFAULT_MAX_FILE_SIZE

    # -- block primitives (backends) ---------------------------------------------------------

    @abstractmethod
    def _read_block(self, cid: CID) -> bytes:
        """The stored bytes of a block, unverified; raise BlockNotFoundError when absent."""

    @abstractmethod
    def put_block(self, cid: str | CID, data: bytes) -> None:
        """Store one block under its CID (implementations verify ``data`` against ``cid``)."""

    def put_blocks(self, blocks: Iterable[tuple[CID, bytes]], *, progress: ProgressCallback | None = None) -> None:
        """Store many blocks (each verified); backends may batch their durability work."""
        for cid, data in blocks:
            self.put_block(cid, data)
            if progress is not None:
                progress(len(data))

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

    def get(
        self, cid: str | CID, *, max_size: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH
    ) -> Iterator[bytes]:
        """The file's bytes in order, one leaf at a time; each block is verified before it is yielded.

        The sizes every node announces are checked against each other and against ``max_size``
        (default :attr:`max_file_size`) before the bytes below them are streamed, and the DAG is
        walked iteratively to at most ``max_depth`` levels: a hostile DAG raises
        LimitExceededError instead of streaming terabytes or exhausting the stack.
        Raises ContentMismatchError (naming ``cid`` and the bad block), BlockNotFoundError or
        MalformedDagError, possibly after earlier chunks were yielded: use :meth:`get_to_path`
        when a half-written result must never be seen.
        """
        root = as_cid(cid)  # parsed here, so a bad CID fails at the call, not at the first read
        limit = self.max_file_size if max_size is None else max_size
        return self._walk(root, limit, max_depth)

    def open(self, cid: str | CID, *, max_size: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> BinaryIO:
        """A readable binary stream over :meth:`get` (same verification, limits and errors)."""
        chunks = self.get(cid, max_size=max_size, max_depth=max_depth)
        return io.BufferedReader(_IteratorRaw(chunks), buffer_size=1 << 20)

    def read_bytes(self, cid: str | CID, *, max_size: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH) -> bytes:
        """The whole file in memory: for small files; ``max_size`` guards against surprises."""
        return b"".join(self.get(cid, max_size=max_size, max_depth=max_depth))

    def get_to_path(
        self,
        cid: str | CID,
        path: str | Path,
        *,
        progress: ProgressCallback | None = None,
        max_size: int | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> int:
        """Write the file to ``path`` atomically (missing folders are created); returns its size.

        Data goes to a temporary file next to ``path`` that is renamed over it only after every
        block was verified, so a mismatch, an exceeded limit or a crash leaves no partial ``path``.
        """
        target = Path(path)
        chunks = self.get(cid, max_size=max_size, max_depth=max_depth)
        written = 0
        created: list[Path] = []
        try:
            created = _make_folders(target.parent)
            with atomic_writer(target) as out:
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                    if progress is not None:
                        progress(len(chunk))
        except BaseException as exc:
            for folder in reversed(created):  # a failed get changes nothing, not even folders
                with contextlib.suppress(OSError):
                    folder.rmdir()
            if isinstance(exc, OSError):
                raise StoreError(f"cannot write {target}: {exc.strerror or exc}") from exc
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

    def iter_dag_blocks(self, cid: str | CID, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Iterator[tuple[CID, bytes]]:
        """Every block of the DAG once, depth-first in link order (the order CAR export uses)."""
        root = as_cid(cid)
        seen: set[bytes] = set()
        stack = [(root, 0)]
        while stack:
            current, depth = stack.pop()
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
                if node.links:
                    _check_depth(root, depth + 1, max_depth)
                stack.extend((link.cid, depth + 1) for link in reversed(node.links))

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

    def _walk(self, root: CID, max_size: int, max_depth: int) -> Iterator[bytes]:
        """Depth-first, with an explicit stack; every size is checked before the bytes below it.

        Each node's announced size (its own data plus its children's blocksizes) must equal what
        its parent announced for it and its own filesize; leaves are checked against their real
        length. So by the time a leaf is yielded, the whole file is known to be the root's
        announced size, which was checked against ``max_size`` before the first byte. The
        number of blocks visited is bounded by that size too (see BLOCK_BUDGET_BASE).
        """
        stack: list[tuple[CID, int | None, int]] = [(root, None, 0)]
        budget = BLOCK_BUDGET_BASE  # grows with the root's announced size, below
        visited = 0
        while stack:
            cid, expected, depth = stack.pop()
            visited += 1
            if visited > budget:
                raise LimitExceededError(
                    str(root), "blocks", budget, f"the DAG needs more than {budget} blocks for its announced size"
                )
            block = self._get_block_in(root, cid)
            if cid.codec == RAW:
                payload: bytes = block
                announced = len(block)
                children: list[tuple[CID, int]] = []
            else:
                node, data = self._decode_file_node(root, cid, block)
                payload = data.data
                announced = len(payload) + sum(data.blocksizes)
                if data.filesize is not None and data.filesize != announced:
                    raise MalformedDagError(
                        str(cid), f"filesize {data.filesize} but {announced} bytes below it (in {root})"
                    )
                children = [(link.cid, size) for link, size in zip(node.links, data.blocksizes, strict=True)]
            if expected is None:
                if announced > max_size:
                    raise LimitExceededError(str(root), "max_size", max_size, f"the file announces {announced} bytes")
                budget += announced // BLOCK_BUDGET_BYTES
            if expected is not None and announced != expected:
                raise MalformedDagError(
                    str(cid), f"parent announces {expected} bytes, node holds {announced} (in {root})"
                )
            if children:
                _check_depth(root, depth + 1, max_depth)
                stack.extend((child, size, depth + 1) for child, size in reversed(children))
            if payload:
                yield payload


def _make_folders(folder: Path) -> list[Path]:
    """Create a missing output folder and its missing parents; returns them, outermost first."""
    missing: list[Path] = []
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise StoreError(f"cannot write into {folder}: {part} is not a folder")
            break
        missing.append(part)
    for part in reversed(missing):
        part.mkdir()
    return list(reversed(missing))


def _check_depth(root: CID, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise LimitExceededError(str(root), "max_depth", max_depth, f"the DAG is deeper than {max_depth} levels")


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
