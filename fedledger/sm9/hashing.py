"""The SM9 hash functions H1 and H2 (GM/T 0044-2016 part 2, 5.3.2), built on SM3.

Both map a byte string to [1, N-1]: hlen = 8 * ceil(5 * log2(N) / 32) = 320 bits are taken from
SM3(prefix || Z || ct) for ct = 1, 2, and h = (Ha mod (N - 1)) + 1. H1 uses prefix 0x01, H2 0x02.
"""

from __future__ import annotations

from fedledger.digests import sm3
from fedledger.sm9.fields import N

_HLEN_BYTES = 40  # 320 bits for the 256-bit N
HID_SIGN = b"\x01"


def _hash_to_range(prefix: bytes, data: bytes) -> int:
    ha = sm3(prefix + data + b"\x00\x00\x00\x01") + sm3(prefix + data + b"\x00\x00\x00\x02")
    return int.from_bytes(ha[:_HLEN_BYTES], "big") % (int(N) - 1) + 1


def h1(data: bytes) -> int:
    """H1(Z, N); for keys Z = ID || hid."""
    return _hash_to_range(b"\x01", data)


def h2(data: bytes) -> int:
    """H2(Z, N); for signatures Z = M || w (w as 384 bytes)."""
    return _hash_to_range(b"\x02", data)


def identity_bytes(identity: str | bytes) -> bytes:
    """Identities are free-form; text is UTF-8 encoded."""
    if isinstance(identity, str):
        return identity.encode("utf-8")
    if isinstance(identity, bytes | bytearray):
        return bytes(identity)
    raise TypeError(f"an SM9 identity is str or bytes, not {type(identity).__name__}")


def hash_to_scalar(tag: bytes, data: bytes) -> int:
    """A scalar in [1, N-1] for protocol values (binding factors), domain-separated by ``tag``.

    Same construction as H1/H2 with a length-prefixed tag in place of their one-byte prefix, so it
    can never collide with an H1 or H2 input.
    """
    return _hash_to_range(b"\xff" + len(tag).to_bytes(2, "big") + tag, data)
