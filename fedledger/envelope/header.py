"""The envelope header: a stable byte format that binds everything a reader must trust.

All integers are big-endian. Layout (version 1):

    magic         8   b"FLEDENV\\x00"
    version       1   1
    aead          1   1 = AES-256-GCM (SHA-256 KDF), 2 = SM4-GCM (SM3 KDF)
    kem           1   1 = SM9-KEM + ML-KEM-768, SHA3-256 combiner (fedledger.envelope.hybrid)
    reserved      1   0
    chunk_size    4   plaintext bytes per chunk, a power of two in [4 KiB, 16 MiB]
    nonce_prefix  7   random
    file_id      16   random
    count         2   number of recipients, 1..1024, identities distinct
    per recipient:
      id_len      2   1..1024
      identity    id_len
      key_id     16   first 16 bytes of SHA3-256(ML-KEM encapsulation key)
      sm9_capsule 64  SM9-KEM C (x || y)
      mlkem_ct  1088  ML-KEM-768 ciphertext
      sealed_key  48  content key sealed under the KEK (AEAD, tag last)

The first 39 bytes (magic .. file_id) are the "context" every wrapped key is sealed to; the digest
of the whole header (with the suite's hash) is the associated data of every chunk, so no header
byte can change without every chunk failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO

from fedledger.envelope.aead import SUITES_BY_CODE, Suite
from fedledger.envelope.errors import EnvelopeFormatError, EnvelopeKeyError
from fedledger.envelope.hybrid import MLKEM_CIPHERTEXT_BYTES, SEALED_KEY_BYTES, SM9_CAPSULE_BYTES, WrappedKey
from fedledger.envelope.recipients import KEY_ID_BYTES, MAX_IDENTITY_BYTES

MAGIC = b"FLEDENV\x00"
VERSION = 1
KEM_HYBRID_SM9_MLKEM768 = 1
NONCE_PREFIX_BYTES = 7
FILE_ID_BYTES = 16
MIN_CHUNK, MAX_CHUNK = 1 << 12, 1 << 24
MAX_RECIPIENTS = 1024
CONTEXT_BYTES = len(MAGIC) + 4 + 4 + NONCE_PREFIX_BYTES + FILE_ID_BYTES
_ENTRY_FIXED = KEY_ID_BYTES + SM9_CAPSULE_BYTES + MLKEM_CIPHERTEXT_BYTES + SEALED_KEY_BYTES


@dataclass(frozen=True)
class Header:
    suite: Suite
    chunk_size: int
    nonce_prefix: bytes
    file_id: bytes
    entries: tuple[WrappedKey, ...]

    def context(self) -> bytes:
        """magic .. file_id: what each wrapped key is sealed to."""
        return context_bytes(self.suite, self.chunk_size, self.nonce_prefix, self.file_id)

    def to_bytes(self) -> bytes:
        parts = [self.context(), len(self.entries).to_bytes(2, "big")]
        for e in self.entries:
            parts += [len(e.identity).to_bytes(2, "big"), e.identity, e.key_id, e.sm9_capsule]
            parts += [e.mlkem_ciphertext, e.sealed_key]
        return b"".join(parts)

    def digest(self) -> bytes:
        return self.suite.digest(self.to_bytes())


def check_chunk_size(chunk_size: int) -> int:
    if not isinstance(chunk_size, int) or not MIN_CHUNK <= chunk_size <= MAX_CHUNK or chunk_size & (chunk_size - 1):
        raise EnvelopeFormatError(f"chunk size must be a power of two in [{MIN_CHUNK}, {MAX_CHUNK}]")
    return chunk_size


def context_bytes(suite: Suite, chunk_size: int, nonce_prefix: bytes, file_id: bytes) -> bytes:
    return (
        MAGIC
        + bytes([VERSION, suite.code, KEM_HYBRID_SM9_MLKEM768, 0])
        + check_chunk_size(chunk_size).to_bytes(4, "big")
        + nonce_prefix
        + file_id
    )


def read_full(src: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes, short only at end of input (pipes may return less per read)."""
    data = src.read(n)
    if len(data) == n or not data:
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = src.read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _exact(src: BinaryIO, n: int, what: str) -> bytes:
    data = read_full(src, n)
    if len(data) != n:
        raise EnvelopeFormatError(f"envelope header ends early (in {what})")
    return data


def read_header(src: BinaryIO) -> Header:
    """Parse and check a header from ``src``, leaving it at the first chunk."""
    fixed = _exact(src, CONTEXT_BYTES, "the fixed fields")
    if fixed[:8] != MAGIC:
        raise EnvelopeFormatError("not a fedledger envelope (bad magic)")
    version, aead, kem, reserved = fixed[8:12]
    if version != VERSION:
        raise EnvelopeFormatError(f"envelope version {version} is not supported (this reader knows {VERSION})")
    if aead not in SUITES_BY_CODE or kem != KEM_HYBRID_SM9_MLKEM768 or reserved != 0:
        raise EnvelopeFormatError("envelope names an unknown AEAD or KEM")
    suite = SUITES_BY_CODE[aead]
    chunk_size = check_chunk_size(int.from_bytes(fixed[12:16], "big"))
    nonce_prefix = fixed[16 : 16 + NONCE_PREFIX_BYTES]
    file_id = fixed[16 + NONCE_PREFIX_BYTES :]
    count = int.from_bytes(_exact(src, 2, "the recipient count"), "big")
    if not 1 <= count <= MAX_RECIPIENTS:
        raise EnvelopeFormatError(f"envelope recipient count must be 1..{MAX_RECIPIENTS}")
    entries: list[WrappedKey] = []
    seen: set[bytes] = set()
    for _ in range(count):
        id_len = int.from_bytes(_exact(src, 2, "an identity length"), "big")
        if not 1 <= id_len <= MAX_IDENTITY_BYTES:
            raise EnvelopeFormatError(f"envelope identity length must be 1..{MAX_IDENTITY_BYTES}")
        identity = _exact(src, id_len, "an identity")
        if identity in seen:
            raise EnvelopeFormatError("envelope names a recipient twice")
        seen.add(identity)
        body = _exact(src, _ENTRY_FIXED, "a wrapped key")
        a = KEY_ID_BYTES
        b = a + SM9_CAPSULE_BYTES
        c = b + MLKEM_CIPHERTEXT_BYTES
        try:
            entries.append(WrappedKey(identity, body[:a], body[a:b], body[b:c], body[c:]))
        except EnvelopeKeyError as exc:  # unreachable with the fixed slices; kept as a guard
            raise EnvelopeFormatError(str(exc)) from exc
    return Header(suite, chunk_size, nonce_prefix, file_id, tuple(entries))
