"""Mask generator: AES-256-CTR keyed by the full 256-bit secret, indexed by global position.

Why: both members of a pair must derive the same mask value for every global entry they both
cover, without generating (or padding) entries neither covers. Entry p of a mask stream is the
ring word at byte offset p * word in the keystream, so any set of positions is generated from
the blocks that hold them. Keys are derived per round and per purpose from the whole secret
(never a 32-bit seed, unlike Flower's numpy RandomState).
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedledger.secagg.errors import SecAggInputError
from fedledger.secagg.ring import RingSpec

BLOCK = 16
_CHUNK = 1 << 20
_ZEROS = memoryview(bytes(_CHUNK))
PIECE_BYTES = _CHUNK  # a piece of stream stays in a core's L2 cache; at most _CHUNK (the zeros it encrypts)


def derive_key(secret: bytes, label: str, *context: int) -> bytes:
    """A 32-byte key for one purpose: SHA3-256 over a label, the context integers and the secret."""
    if len(secret) < 32:
        raise SecAggInputError("mask secrets must be at least 256 bits")
    h = hashlib.sha3_256(b"fedledger-secagg/" + label.encode() + b"\x00")
    for value in context:
        h.update(int(value).to_bytes(8, "big", signed=True))
    h.update(secret)
    return h.digest()


def stream(key: bytes, count: int, spec: RingSpec, first_block: int = 0) -> np.ndarray:
    """``count`` ring words of the stream ``key`` from block ``first_block`` on (little-endian words).

    Encrypts a cached zero chunk into one preallocated buffer, chunk by chunk: no input copy of
    the whole length, and the chunk stays in cache (several times faster than one big call).
    """
    word = spec.bits // 8
    n_bytes = -(-(count * word) // BLOCK) * BLOCK
    out = np.empty(n_bytes + BLOCK, dtype=np.uint8)  # update_into wants block - 1 spare bytes
    view = memoryview(out.data)
    encryptor = Cipher(algorithms.AES(key), modes.CTR(first_block.to_bytes(BLOCK, "big"))).encryptor()
    for start in range(0, n_bytes, _CHUNK):
        size = min(_CHUNK, n_bytes - start)
        encryptor.update_into(_ZEROS[:size], view[start : start + size + BLOCK])
    words = out[:n_bytes].view(np.dtype(spec.dtype).newbyteorder("<"))[:count]
    return words if sys.byteorder == "little" else words.astype(spec.dtype)


def stream_pieces(key: bytes, count: int, spec: RingSpec) -> Iterator[tuple[int, np.ndarray]]:
    """The words of ``stream(key, count, spec)`` as consecutive (start, words) pieces.

    Why: a consumer that combines each piece at once (unmasking) never holds the whole stream;
    one buffer is refilled, so ``words`` is valid (and writable) only until the next piece.
    """
    word = spec.bits // 8
    piece_words = PIECE_BYTES // word
    buffer = np.empty(PIECE_BYTES + BLOCK, dtype=np.uint8)  # update_into wants block - 1 spare bytes
    view = memoryview(buffer.data)
    words = buffer[:PIECE_BYTES].view(np.dtype(spec.dtype).newbyteorder("<"))
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(BLOCK))).encryptor()
    for start in range(0, count, piece_words):
        size = min(piece_words, count - start)
        n_bytes = -(-(size * word) // BLOCK) * BLOCK
        encryptor.update_into(_ZEROS[:n_bytes], view[: n_bytes + BLOCK])
        yield start, words[:size] if sys.byteorder == "little" else words[:size].astype(spec.dtype)


def mask_at(key: bytes, positions: np.ndarray, spec: RingSpec) -> np.ndarray:
    """Ring words of the stream ``key`` at the given global positions (sorted or not)."""
    if positions.size == 0:
        return np.zeros(0, dtype=spec.dtype)
    per_block = BLOCK // (spec.bits // 8)
    low, high = int(positions.min()), int(positions.max())
    first_block = low // per_block
    offset = first_block * per_block
    words = stream(key, high + 1 - offset, spec, first_block)
    return words[positions - offset]
