"""Streaming envelope encryption: a fresh content key per file, chunked AEAD in the STREAM construction.

After the header (``fedledger.envelope.header``) come the chunks, each ``chunk_size`` plaintext
bytes except the last (which may be shorter, or empty for an empty file), each sealed as
ciphertext || 16-byte tag with

    key   = HMAC-hash(content key, "fedledger/envelope/v1/chunk-key" || context)[:key length]
    nonce = nonce_prefix (7) || chunk index (4, big-endian) || last-chunk flag (1: 0x01 on the last)
    aad   = hash(header bytes)

so a reordered or duplicated chunk fails (its index is in the nonce), a file cut at a chunk
boundary fails (the new last chunk was sealed with flag 0) and so does one extended past its end
(the real last chunk was sealed with flag 1). Memory stays at about three chunks whatever the file
size. A reader yields a chunk's plaintext only after its tag verified; ``open_file`` writes to a
temporary file that replaces the target only when every chunk verified, so a failed decryption
leaves no plaintext behind.
"""

from __future__ import annotations

import io
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fedledger.envelope.aead import TAG_BYTES, ChunkCipher, suite_named
from fedledger.envelope.errors import EnvelopeAccessError, EnvelopeFormatError, EnvelopeIntegrityError
from fedledger.envelope.header import (
    FILE_ID_BYTES,
    NONCE_PREFIX_BYTES,
    Header,
    check_chunk_size,
    context_bytes,
    read_full,
    read_header,
)
from fedledger.envelope.hybrid import CONTENT_KEY_BYTES, unwrap, wrap
from fedledger.envelope.recipients import Recipient, RecipientKeys
from fedledger.fileio import PUBLIC_MODE, SECRET_MODE, atomic_writer
from fedledger.sm9.encryption_keys import EncryptMasterPublicKey
from fedledger.store.base import _IteratorRaw  # the store's iterator-to-stream adapter

DEFAULT_AEAD = "AES-256-GCM"
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNKS = 1 << 32
_CHUNK_KEY_LABEL = b"fedledger/envelope/v1/chunk-key"


@dataclass(frozen=True)
class SealInfo:
    """What sealing produced: the header's digest, how many chunks, and the byte counts."""

    header_digest: bytes
    chunks: int
    plaintext_bytes: int
    ciphertext_bytes: int


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _chunk_cipher(header: Header, content_key: bytes) -> ChunkCipher:
    suite = header.suite
    return suite.cipher(suite.derive(content_key, _CHUNK_KEY_LABEL + header.context()))


def _check_recipients(recipients: Sequence[Recipient]) -> list[Recipient]:
    listed = list(recipients)
    if not listed:
        raise EnvelopeFormatError("an envelope needs at least one recipient")
    if not all(isinstance(r, Recipient) for r in listed):
        raise EnvelopeFormatError("recipients must be Recipient cards")
    if len({r.identity for r in listed}) != len(listed):
        raise EnvelopeFormatError("a recipient is listed twice")
    return listed


def seal_pieces(
    src: BinaryIO,
    recipients: Sequence[Recipient],
    sm9_master: EncryptMasterPublicKey,
    *,
    aead: str = DEFAULT_AEAD,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[bytes]:
    """The envelope of ``src`` as an iterator: the header, then each sealed chunk.

    Parameters and recipients are checked and every key is wrapped before this returns, so bad
    input fails here, before a consumer has taken any byte.
    """
    suite = suite_named(aead)
    check_chunk_size(chunk_size)
    listed = _check_recipients(recipients)
    content_key = secrets.token_bytes(CONTENT_KEY_BYTES)
    prefix, file_id = secrets.token_bytes(NONCE_PREFIX_BYTES), secrets.token_bytes(FILE_ID_BYTES)
    context = context_bytes(suite, chunk_size, prefix, file_id)
    entries = tuple(wrap(content_key, r, sm9_master, suite, context) for r in listed)
    header = Header(suite, chunk_size, prefix, file_id, entries)
    return _sealed(src, header, _chunk_cipher(header, content_key))


def _sealed(src: BinaryIO, header: Header, cipher: ChunkCipher) -> Iterator[bytes]:
    header_bytes = header.to_bytes()
    aad = header.suite.digest(header_bytes)
    yield header_bytes
    index = 0
    current = read_full(src, header.chunk_size)
    while True:
        following = read_full(src, header.chunk_size) if len(current) == header.chunk_size else b""
        last = not following
        yield cipher.seal(_nonce(header.nonce_prefix, index, last), current, aad)
        if last:
            return
        index += 1
        if index >= MAX_CHUNKS:
            raise EnvelopeFormatError("file too large for one envelope (2^32 chunks)")
        current = following


def seal_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[Recipient],
    sm9_master: EncryptMasterPublicKey,
    *,
    aead: str = DEFAULT_AEAD,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> SealInfo:
    """Encrypt ``src`` to ``dst`` for ``recipients`` under a fresh content key."""
    pieces = seal_pieces(src, recipients, sm9_master, aead=aead, chunk_size=chunk_size)
    header_bytes = next(pieces)
    dst.write(header_bytes)
    chunks, written = 0, len(header_bytes)
    for sealed in pieces:
        dst.write(sealed)
        chunks += 1
        written += len(sealed)
    digest = suite_named(aead).digest(header_bytes)
    return SealInfo(digest, chunks, written - len(header_bytes) - chunks * TAG_BYTES, written)


def sealed_reader(pieces: Iterator[bytes]) -> BinaryIO:
    """A readable stream over ``seal_pieces(...)``, sealed as it is read:
    ``store.put(sealed_reader(seal_pieces(src, recipients, mpk)))`` adds an encrypted file without a
    temporary copy."""
    return io.BufferedReader(_IteratorRaw(pieces), buffer_size=DEFAULT_CHUNK_SIZE)


def _content_key(header: Header, keys: Sequence[RecipientKeys]) -> bytes:
    mine = [(e, k) for k in keys for e in header.entries if e.identity == k.identity]
    if not mine:
        raise EnvelopeAccessError("none of these keys' identities is a recipient of this envelope")
    for entry, key in mine:
        if entry.key_id == key.public.key_id:
            return unwrap(entry, key, header.suite, header.context())
    raise EnvelopeAccessError("this envelope was wrapped to another ML-KEM key of this identity (rotated?)")


def open_chunks(src: BinaryIO, keys: RecipientKeys | Sequence[RecipientKeys]) -> Iterator[bytes]:
    """Yield the plaintext chunk by chunk, each only after it authenticated.

    Raises ``EnvelopeIntegrityError`` at the first bad chunk, including a missing or extra tail;
    a consumer that must not act on a prefix of a bad file should use ``open_file``.
    """
    header = read_header(src)
    content_key = _content_key(header, [keys] if isinstance(keys, RecipientKeys) else list(keys))
    aad = header.digest()
    cipher = _chunk_cipher(header, content_key)
    record = header.chunk_size + TAG_BYTES
    current = read_full(src, record)
    index = 0
    while True:
        if len(current) < TAG_BYTES:
            raise EnvelopeIntegrityError(f"envelope truncated: chunk {index} is missing or cut")
        following = read_full(src, record) if len(current) == record else b""
        last = not following
        try:
            plaintext = cipher.open(_nonce(header.nonce_prefix, index, last), current, aad)
        except EnvelopeIntegrityError:
            raise EnvelopeIntegrityError(
                f"chunk {index} failed authentication (altered, reordered, truncated or extended)"
            ) from None
        yield plaintext
        if last:
            return
        index += 1
        current = following


def open_stream(src: BinaryIO, dst: BinaryIO, keys: RecipientKeys | Sequence[RecipientKeys]) -> int:
    """Decrypt ``src`` into ``dst``; returns the plaintext size. On error ``dst`` holds a prefix: discard it."""
    total = 0
    for chunk in open_chunks(src, keys):
        dst.write(chunk)
        total += len(chunk)
    return total


def seal_file(
    src: str | Path,
    dst: str | Path,
    recipients: Sequence[Recipient],
    sm9_master: EncryptMasterPublicKey,
    *,
    aead: str = DEFAULT_AEAD,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    durable: bool = True,
) -> SealInfo:
    """Encrypt file ``src`` into ``dst`` (written atomically; ciphertext is public, mode 0644)."""
    with open(src, "rb") as fin, atomic_writer(dst, PUBLIC_MODE, durable=durable) as fout:
        return seal_stream(fin, fout, recipients, sm9_master, aead=aead, chunk_size=chunk_size)


def open_file(
    src: str | Path, dst: str | Path, keys: RecipientKeys | Sequence[RecipientKeys], *, durable: bool = True
) -> int:
    """Decrypt ``src`` into ``dst`` (mode 0600); ``dst`` appears only if every chunk authenticated."""
    with open(src, "rb") as fin, atomic_writer(dst, SECRET_MODE, durable=durable) as fout:
        return open_stream(fin, fout, keys)


def recipients_of(src: BinaryIO) -> list[bytes]:
    """The identities an envelope is readable by (no key needed: the header is public)."""
    return [entry.identity for entry in read_header(src).entries]
