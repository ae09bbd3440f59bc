"""Mask generator: AES-256-CTR keyed by the full 256-bit secret, indexed by global position.

Why: both members of a pair must derive the same mask value for every global entry they both
cover, without generating (or padding) entries neither covers. Entry p of a mask stream is the
ring word at byte offset p * word in the keystream, so any set of positions is generated from
the blocks that hold them. Keys are derived per round and per purpose from the whole secret
(never a 32-bit seed, unlike Flower's numpy RandomState).
"""

from __future__ import annotations

import hashlib

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fedledger.secagg.errors import SecAggInputError
from fedledger.secagg.ring import RingSpec

BLOCK = 16


def derive_key(secret: bytes, label: str, *context: int) -> bytes:
    """A 32-byte key for one purpose: SHA3-256 over a label, the context integers and the secret."""
    if len(secret) < 32:
        raise SecAggInputError("mask secrets must be at least 256 bits")
    h = hashlib.sha3_256(b"fedledger-secagg/" + label.encode() + b"\x00")
    for value in context:
        h.update(int(value).to_bytes(8, "big", signed=True))
    h.update(secret)
    return h.digest()


def mask_at(key: bytes, positions: np.ndarray, spec: RingSpec) -> np.ndarray:
    """Ring words of the stream ``key`` at the given global positions (sorted or not)."""
    if positions.size == 0:
        return np.zeros(0, dtype=spec.dtype)
    word = spec.bits // 8
    low, high = int(positions.min()), int(positions.max())
    first_block = low * word // BLOCK
    last_byte = (high + 1) * word
    n_bytes = -(-(last_byte - first_block * BLOCK) // BLOCK) * BLOCK
    counter = first_block.to_bytes(BLOCK, "big")
    encryptor = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    stream = encryptor.update(bytes(n_bytes)) + encryptor.finalize()
    words = np.frombuffer(stream, dtype=np.dtype(spec.dtype).newbyteorder("<"))
    return words[positions - first_block * BLOCK // word].astype(spec.dtype)
