"""CAR (content-addressed archive) export and import, CARv1 as ``ipfs dag export``/``import`` use.

Layout: varint(len) + DAG-CBOR header {"roots": [CID...], "version": 1}, then per block
varint(len(cid) + len(data)) + binary CID + data. Export walks the DAG depth-first and writes
each block once. Import streams: it reads one section at a time (bounded by a per-block size
limit, so a hostile length cannot make it allocate gigabytes), verifies every block against its
CID, and writes nothing until the whole file and its roots' DAGs were checked. CARv2 files are
accepted by reading the CARv1 payload they wrap.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fedledger.fileio import atomic_writer
from fedledger.store.base import DEFAULT_MAX_DEPTH, ContentStore
from fedledger.store.builder import ProgressCallback, Source
from fedledger.store.cid import CID, Readable, as_cid, encode_varint, read_varint
from fedledger.store.errors import (
    ContentMismatchError,
    InvalidCarError,
    InvalidCIDError,
    LimitExceededError,
    StoreError,
)

MAX_BLOCK_SIZE = 4 * 1024 * 1024  # Kubo refuses blocks over 1 MiB (2 MiB for block put); generous
_MAX_HEADER_SIZE = 64 * 1024
_CARV2_PRAGMA = bytes.fromhex("0aa16776657273696f6e02")
_CID_TAG = 42


# -- export -----------------------------------------------------------------------------------


def car_header(roots: list[CID]) -> bytes:
    """The length-prefixed DAG-CBOR CARv1 header (keys in DAG-CBOR order: 'roots' before 'version')."""
    body = bytearray()
    body += b"\xa2"  # map of 2
    body += _cbor_text("roots")
    body += _cbor_head(4, len(roots))
    for root in roots:
        body += _cbor_head(6, _CID_TAG)
        body += _cbor_head(2, len(root.to_bytes()) + 1) + b"\x00" + root.to_bytes()
    body += _cbor_text("version")
    body += _cbor_head(0, 1)
    return encode_varint(len(body)) + bytes(body)


def write_car(
    store: ContentStore,
    cid: str | CID,
    out: BinaryIO,
    progress: ProgressCallback | None = None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> int:
    """Write the DAG of ``cid`` as CARv1 to a stream; returns the number of blocks."""
    root = as_cid(cid)
    out.write(car_header([root]))
    count = 0
    for block_cid, data in store.iter_dag_blocks(root, max_depth=max_depth):
        cid_bytes = block_cid.to_bytes()
        out.write(encode_varint(len(cid_bytes) + len(data)))
        out.write(cid_bytes)
        out.write(data)
        count += 1
        if progress is not None:
            progress(len(data))
    return count


def export_car(
    store: ContentStore,
    cid: str | CID,
    out_path: str | Path,
    progress: ProgressCallback | None = None,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> int:
    """Write the DAG of ``cid`` to ``out_path`` (atomically: no partial file on error); returns blocks."""
    with atomic_writer(out_path) as out:
        return write_car(store, cid, out, progress, max_depth=max_depth)


# -- import -----------------------------------------------------------------------------------


def read_car(stream: Readable, *, source: str = "CAR") -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse the header; returns (roots, iterator of (cid, data)) with every block verified."""
    first = stream.read(len(_CARV2_PRAGMA))
    if first == _CARV2_PRAGMA:
        header = stream.read(40)
        if len(header) != 40:
            raise InvalidCarError(f"{source}: truncated CARv2 header")
        data_offset, data_size = struct.unpack_from("<QQ", header, 16)
        if not hasattr(stream, "seek"):
            raise InvalidCarError(f"{source}: CARv2 needs a seekable stream")
        stream.seek(data_offset)
        return read_car(_Limited(stream, data_size), source=source)
    prefix = _Prefixed(first, stream)
    try:
        header_len = read_varint(prefix)
    except ValueError as exc:
        raise InvalidCarError(f"{source}: {exc} in header length") from None
    if header_len is None or not 0 < header_len <= _MAX_HEADER_SIZE:
        raise InvalidCarError(f"{source}: missing or implausible header length {header_len}")
    header = prefix.read(header_len)
    if len(header) != header_len:
        raise InvalidCarError(f"{source}: truncated header")
    roots = _parse_header(header, source)
    return roots, _iter_sections(prefix, source)


def import_car(
    store: ContentStore,
    car_path: str | Path,
    *,
    pin: bool = True,
    progress: ProgressCallback | None = None,
    max_size: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> list[str]:
    """Load every block of a CAR file into ``store``; pins and returns the root CIDs.

    Like ``ipfs dag import``, but nothing is written until the whole CAR was checked: every block
    against its CID, the blocks' total against ``max_size`` (default: the store's
    ``max_file_size``), and each root's DAG for completeness (here or already in the store) and
    depth. A wrong, oversized or missing block or a truncated file leaves the store untouched.
    """
    path = Path(car_path)
    limit = store.max_file_size if max_size is None else max_size
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidCarError(f"cannot open {path}: {exc.strerror}") from exc
    with stream:
        counted = _Counting(stream)
        roots, sections = read_car(counted, source=str(path))
        index: dict[bytes, tuple[CID, int, int]] = {}
        total = 0
        for cid, data in sections:
            total += len(data)
            if total > limit:
                raise LimitExceededError(str(path), "max_size", limit, f"the CAR holds {total}+ bytes of blocks")
            index.setdefault(cid.multihash, (cid, counted.position - len(data), len(data)))
        staged = _StagedCar(stream, index, store)
        for root in roots:  # raises BlockNotFoundError if a DAG is incomplete, before anything is written
            for _ in staged.iter_dag_blocks(root, max_depth=max_depth):
                pass
        store.put_blocks(staged.blocks(), progress=progress)
    if pin:
        for root in roots:
            store.pin(root)
    return [str(root) for root in roots]


class _StagedCar(ContentStore):
    """The verified blocks of an open CAR file, read back by offset, over the store being imported into.

    Lets the ordinary DAG walk check a CAR's roots before one block of it is written. Read-only.
    """

    def __init__(self, stream: BinaryIO, index: dict[bytes, tuple[CID, int, int]], below: ContentStore) -> None:
        self._stream = stream
        self._index = index
        self._below = below
        self.location = f"{stream.name} + {below.location}"

    def blocks(self) -> Iterator[tuple[CID, bytes]]:
        """The CAR's blocks in file order, each read back (put_block verifies them again)."""
        for cid, _, _ in self._index.values():
            yield cid, self._read_block(cid)

    def _read_block(self, cid: CID) -> bytes:
        entry = self._index.get(cid.multihash)
        if entry is None:
            return self._below.get_block(cid)
        _, offset, length = entry
        self._stream.seek(offset)
        return self._stream.read(length)

    def has_block(self, cid: str | CID) -> bool:
        return as_cid(cid).multihash in self._index or self._below.has_block(cid)

    def put_block(self, cid: str | CID, data: bytes) -> None:
        raise StoreError("a CAR being imported is read-only")

    def put(
        self, source: Source, *, cid_version: int = 0, pin: bool = True, progress: ProgressCallback | None = None
    ) -> str:
        raise StoreError("a CAR being imported is read-only")

    def pin(self, cid: str | CID) -> None:
        raise StoreError("a CAR being imported is read-only")

    def unpin(self, cid: str | CID) -> None:
        raise StoreError("a CAR being imported is read-only")

    def is_pinned(self, cid: str | CID) -> bool:
        return False


def _iter_sections(stream: Readable, source: str) -> Iterator[tuple[CID, bytes]]:
    index = 0
    while True:
        try:
            length = read_varint(stream)
        except ValueError as exc:
            raise InvalidCarError(f"{source}: {exc} at section {index}") from None
        if length is None:
            return
        if not 0 < length <= MAX_BLOCK_SIZE + 64:
            raise InvalidCarError(f"{source}: section {index} claims {length} bytes (limit {MAX_BLOCK_SIZE})")
        section = stream.read(length)
        if len(section) != length:
            raise InvalidCarError(f"{source}: section {index} is truncated")
        try:
            cid, offset = CID.decode_prefix(section)
        except InvalidCIDError as exc:
            raise InvalidCarError(f"{source}: section {index}: {exc}") from None
        data = section[offset:]
        if not cid.matches(data):
            raise ContentMismatchError(str(cid), f"block in {source} (section {index}) hashes differently")
        yield cid, data
        index += 1


# -- minimal DAG-CBOR (only what a CAR header contains) ---------------------------------------


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes((major << 5 | value,))
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes((major << 5 | info,)) + value.to_bytes(size, "big")
    raise ValueError("CBOR value too large")


def _cbor_text(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _cbor_head(3, len(raw)) + raw


def _parse_header(header: bytes, source: str) -> list[CID]:
    try:
        value, end = _cbor_decode(header, 0, depth=0)
    except (ValueError, IndexError, InvalidCIDError) as exc:
        raise InvalidCarError(f"{source}: malformed CAR header: {exc}") from None
    if end != len(header) or not isinstance(value, dict):
        raise InvalidCarError(f"{source}: CAR header is not a single map")
    if value.get("version") != 1:
        raise InvalidCarError(f"{source}: unsupported CAR version {value.get('version')!r}")
    roots = value.get("roots")
    if not isinstance(roots, list) or not roots or not all(isinstance(r, CID) for r in roots):
        raise InvalidCarError(f"{source}: CAR header has no valid roots")
    return roots


def _cbor_decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > 8:
        raise ValueError("nesting too deep")
    initial = data[pos]
    major, info = initial >> 5, initial & 31
    pos += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        size = 1 << (info - 24)
        arg = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise ValueError(f"unsupported CBOR additional info {info}")
    if major == 0:
        return arg, pos
    if major in (2, 3):
        raw = data[pos : pos + arg]
        if len(raw) != arg:
            raise ValueError("truncated string")
        return (raw if major == 2 else raw.decode("utf-8")), pos + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, pos = _cbor_decode(data, pos, depth + 1)
            items.append(item)
        return items, pos
    if major == 5:
        mapping = {}
        for _ in range(arg):
            key, pos = _cbor_decode(data, pos, depth + 1)
            mapping[key], pos = _cbor_decode(data, pos, depth + 1)
        return mapping, pos
    if major == 6 and arg == _CID_TAG:
        raw, pos = _cbor_decode(data, pos, depth + 1)
        if not isinstance(raw, bytes) or not raw.startswith(b"\x00"):
            raise ValueError("tag 42 must wrap bytes starting with 0x00")
        return CID.from_bytes(raw[1:]), pos
    raise ValueError(f"unsupported CBOR major type {major}")


class _Prefixed:
    """A stream with some already-read bytes pushed back in front."""

    def __init__(self, prefix: bytes, stream: Readable) -> None:
        self._prefix = prefix
        self._stream = stream

    def read(self, n: int) -> bytes:
        if self._prefix:
            head, self._prefix = self._prefix[:n], self._prefix[n:]
            if len(head) < n:
                head += self._stream.read(n - len(head))
            return head
        return self._stream.read(n)


class _Counting:
    """Counts the bytes read from a stream, so the importer knows where each block lies in the file."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.position = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.position += len(data)
        return data

    def seek(self, offset: int) -> int:
        self.position = self._stream.seek(offset)
        return self.position


class _Limited:
    """Reads at most ``limit`` bytes from a stream (a CARv2's inner CARv1)."""

    def __init__(self, stream: Readable, limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, n: int = -1) -> bytes:
        n = self._left if n < 0 else min(n, self._left)
        data = self._stream.read(n)
        self._left -= len(data)
        return data
