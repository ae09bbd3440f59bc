"""SM3 digests (GB/T 32905) for everything the ledger names: model files, updates, records.

One place for it so that every part hashes the same way; SM3 comes from ``cryptography``
(compiled, ~100x faster than pure-Python implementations).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives import hashes

_CHUNK = 1 << 20


def sm3(data: bytes) -> bytes:
    """The 32-byte SM3 digest of ``data``."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def sm3_chunks(chunks: Iterable[bytes]) -> bytes:
    """The SM3 digest of the concatenation of ``chunks``, without holding them all."""
    h = hashes.Hash(hashes.SM3())
    for chunk in chunks:
        h.update(chunk)
    return h.finalize()


def sm3_file(path: str | Path) -> bytes:
    """The SM3 digest of a file's bytes, read in 1 MiB chunks (memory stays bounded)."""
    with open(path, "rb") as fh:
        return sm3_chunks(iter(lambda: fh.read(_CHUNK), b""))


def as_bytes32(value: bytes, what: str) -> bytes:
    """``value`` as bytes if it is a 32-byte digest (every digest field on the ledger is bytes32)."""
    if not isinstance(value, bytes | bytearray):
        raise ValueError(f"{what} must be 32 bytes, got {type(value).__name__}")
    if len(value) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(value)}")
    return bytes(value)
