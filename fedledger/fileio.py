"""Atomic, durable file writes: the one helper every module uses to put a file on disk.

A crash at any line leaves either the old file or the new one, never a half-written one, and no
temporary file behind: the data goes to a uniquely named sibling opened with ``O_EXCL`` and the
final mode (0600 for secrets), is fsynced, renamed over the target, and the directory is fsynced
so the rename itself survives a power cut.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

SECRET_MODE = 0o600
PUBLIC_MODE = 0o644


def fsync_dir(directory: str | Path) -> None:
    """fsync a directory so renames and new entries in it are durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: int = PUBLIC_MODE, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file whose content replaces ``path`` atomically when the block ends.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the umask may have narrowed it; secrets stay 0600 either way
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = PUBLIC_MODE, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically with ``mode``; returns the path."""
    with atomic_writer(path, mode, durable=durable) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str, mode: int = PUBLIC_MODE, *, durable: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically with ``mode``; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode, durable=durable)
