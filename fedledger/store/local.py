"""The embedded store: a blockstore directory that needs nothing installed.

Layout under ``root`` (the same sharding Kubo's flatfs uses, so a block's place is easy to find):

    blocks/<2 chars>/<BASE32 multihash>.data   one file per block, keyed by multihash
    pins.json                                  pinned root CIDs, replaced atomically
    pins.lock                                  flock() serialising pin-set updates

Each block is written with ``fedledger.fileio.atomic_writer`` (a hidden, uniquely named sibling
renamed into place), so readers never see half a block and two processes adding the same
content only ever replace a block with identical bytes. Blocks are keyed by multihash, which
makes CIDv0 and CIDv1 of the same bytes share one file. With ``durable=True`` (default) a put
fsyncs its blocks and their directories before it returns the CID, so a CID that was handed out
survives a power cut; a put writes its blocks without fsync and then fsyncs the batch and each
directory once, which is what keeps it fast. A crash before that may leave a block that fails
verification, which reads report and the next put of that content replaces, or a hidden
temporary that nothing reads.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from fedledger.fileio import atomic_write_bytes, atomic_writer, fsync_dir
from fedledger.store.base import ContentStore
from fedledger.store.builder import ProgressCallback, Source, build_dag
from fedledger.store.cid import CID, as_cid
from fedledger.store.errors import BlockNotFoundError, ContentMismatchError, StoreError

_WRITER_THREADS = 2
_MAX_PENDING = 8


class LocalStore(ContentStore):
    """Content store in a local directory (created on first use)."""

    def __init__(self, root: str | Path, *, durable: bool = True) -> None:
        self.root = Path(root).expanduser()
        self.location = f"local:{self.root}"
        self.durable = durable
        self._blocks = self.root / "blocks"
        self._pins_path = self.root / "pins.json"
        self._lock_path = self.root / "pins.lock"
        try:
            self._blocks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the local store at {self.root}: {exc.strerror}") from exc
        self._known_dirs: set[str] = {entry.name for entry in os.scandir(self._blocks) if entry.is_dir()}

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    # -- blocks ------------------------------------------------------------------------------

    def block_path(self, cid: str | CID) -> Path:
        """Where a block lives: flatfs 'next-to-last/2' sharding of the base32 multihash."""
        key = base64.b32encode(as_cid(cid).multihash).decode("ascii").rstrip("=")
        return self._blocks / key[-3:-1] / f"{key}.data"

    def _read_block(self, cid: CID) -> bytes:
        try:
            return self.block_path(cid).read_bytes()
        except FileNotFoundError:
            raise BlockNotFoundError(str(cid), f"not in {self.location}") from None

    def has_block(self, cid: str | CID) -> bool:
        return self.block_path(cid).is_file()

    def put_block(self, cid: str | CID, data: bytes) -> None:
        cid = as_cid(cid)
        _check_block(cid, data)
        self._write_block(cid, (data,), durable=self.durable)

    def put_blocks(self, blocks: Iterable[tuple[CID, bytes]], *, progress: ProgressCallback | None = None) -> None:
        """Write every block non-durably, then fsync them and their directories once."""
        written: list[Path] = []
        for cid, data in blocks:
            _check_block(cid, data)
            written.append(self._write_block(cid, (data,), durable=False))
            if progress is not None:
                progress(len(data))
        if self.durable:
            self._sync(written)

    def _write_block(self, cid: CID, parts: Sequence[bytes], *, durable: bool = False) -> Path:
        """Write a block atomically (readers see no block or the whole block); thread-safe."""
        path = self.block_path(cid)
        shard = path.parent
        if shard.name not in self._known_dirs:
            shard.mkdir(exist_ok=True)
            self._known_dirs.add(shard.name)
        with atomic_writer(path, durable=durable) as out:
            for part in parts:
                out.write(part)
        return path

    def _sync(self, paths: list[Path]) -> None:
        """fsync blocks written non-durably, then once each directory whose entries changed."""
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        for directory in {path.parent for path in paths}:
            fsync_dir(directory)

    # -- files -------------------------------------------------------------------------------

    def put(
        self,
        source: Source,
        *,
        cid_version: int = 0,
        pin: bool = True,
        progress: ProgressCallback | None = None,
    ) -> str:
        # Hashing (this thread) and file creation (writer threads) overlap: both release the GIL,
        # and creating one file per block is what costs most on a typical filesystem. At most
        # _MAX_PENDING blocks wait in memory, so memory stays bounded however large the file.
        written: list[Path] = []
        pending: deque[Future[Path]] = deque()

        def sink(cid: CID, parts: Sequence[bytes]) -> None:
            pending.append(pool.submit(self._write_block, cid, parts))
            while len(pending) > _MAX_PENDING or (pending and pending[0].done()):
                written.append(pending.popleft().result())

        try:
            with ThreadPoolExecutor(max_workers=_WRITER_THREADS, thread_name_prefix="store-writer") as pool:
                try:
                    result = build_dag(source, sink, cid_version=cid_version, progress=progress)
                finally:
                    while pending:
                        written.append(pending.popleft().result())
        except OSError as exc:
            raise StoreError(f"cannot add to {self.location}: {exc}") from exc
        if self.durable:
            self._sync(written)
        cid = str(result.cid)
        if pin:
            self.pin(cid)
        return cid

    # -- pins --------------------------------------------------------------------------------

    def pin(self, cid: str | CID) -> None:
        parsed = as_cid(cid)
        if not self.has_block(parsed):
            raise BlockNotFoundError(str(parsed), f"cannot pin what is not in {self.location}")
        with self._pins_locked() as pins:
            pins.add(str(parsed))

    def unpin(self, cid: str | CID) -> None:
        parsed = str(as_cid(cid))
        with self._pins_locked() as pins:
            pins.discard(parsed)

    def is_pinned(self, cid: str | CID) -> bool:
        return str(as_cid(cid)) in self._read_pins()

    def pins(self) -> list[str]:
        """The pinned root CIDs, sorted."""
        return sorted(self._read_pins())

    def _read_pins(self) -> set[str]:
        try:
            raw = json.loads(self._pins_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            raise StoreError(f"cannot read the pin set {self._pins_path}: {exc}") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("pins"), list):
            raise StoreError(f"the pin set {self._pins_path} is not in the expected format")
        return {str(p) for p in raw["pins"]}

    @contextlib.contextmanager
    def _pins_locked(self) -> Iterator[set[str]]:
        """Read-modify-write of the pin set under an exclusive flock; written back atomically."""
        with open(self._lock_path, "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                pins = self._read_pins()
                before = set(pins)
                yield pins
                if pins != before:
                    self._write_pins(pins)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write_pins(self, pins: set[str]) -> None:
        payload = json.dumps({"version": 1, "pins": sorted(pins)}, indent=1).encode("utf-8")
        atomic_write_bytes(self._pins_path, payload, durable=self.durable)


def _check_block(cid: CID, data: bytes) -> None:
    if not cid.matches(data):
        raise ContentMismatchError(str(cid), "refusing to store a block that hashes differently")
