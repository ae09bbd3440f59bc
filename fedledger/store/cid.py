"""CIDs, sha2-256 multihashes, unsigned varints, base58btc and base32: just what Kubo's defaults use.

Hand-written (about a hundred lines) instead of pulling in py-cid/multiformats: the store needs
two codecs (dag-pb, raw), one hash (sha2-256) and two string forms (CIDv0 base58btc, CIDv1
base32), and every one of these byte layouts is checked in the tests against independent tools.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Protocol

from fedledger.store.errors import InvalidCIDError

DAG_PB = 0x70
RAW = 0x55
SHA2_256 = 0x12
_SHA2_256_LEN = 32
_CODEC_NAMES = {DAG_PB: "dag-pb", RAW: "raw"}
_MAX_CID_TEXT = 128  # a sha2-256 CIDv1 in base32 has 59 characters; anything far longer is not one

_B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


class Readable(Protocol):
    """Anything with ``read(n) -> bytes`` (files, sockets' makefile(), small adapters)."""

    def read(self, n: int, /) -> bytes: ...


# -- varints (unsigned LEB128, as in multiformats and protobuf) ---------------------------------


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 encoding of a non-negative integer."""
    if value < 0:
        raise ValueError(f"varint cannot encode negative value {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Decode a varint at ``pos``; returns (value, position after it). Raises ValueError if cut off."""
    value = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 9 bytes")


def read_varint(stream: Readable) -> int | None:
    """Read one varint from a stream; None at a clean end of stream (no byte read)."""
    value = 0
    shift = 0
    first = True
    while True:
        b = stream.read(1)
        if not b:
            if first:
                return None
            raise ValueError("truncated varint")
        first = False
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 9 bytes")


def _decode_minimal_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """decode_varint that also refuses padded encodings (multiformats requires minimal varints)."""
    value, end = decode_varint(data, pos)
    if end - pos != len(encode_varint(value)):
        raise ValueError("varint not minimally encoded")
    return value, end


# -- base58btc and base32 ---------------------------------------------------------------------


def b58encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (leading zero bytes become '1')."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    out = bytearray()
    while num:
        num, rem = divmod(num, 58)
        out.append(_B58_ALPHABET[rem])
    return (b"1" * zeros + bytes(reversed(out))).decode("ascii")


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`; raises ValueError on characters outside the alphabet."""
    raw = text.encode("ascii", errors="replace")
    num = 0
    for c in raw:
        if c not in _B58_INDEX:
            raise ValueError(f"invalid base58 character {chr(c)!r}")
        num = num * 58 + _B58_INDEX[c]
    zeros = len(raw) - len(raw.lstrip(b"1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def b32encode_lower(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding (multibase prefix 'b')."""
    return base64.b32encode(data).decode("ascii").lower().rstrip("=")


def b32decode_lower(text: str) -> bytes:
    padded = text.upper() + "=" * (-len(text) % 8)
    return base64.b32decode(padded)


# -- multihash and CID --------------------------------------------------------------------------


def sha256_multihash(data: bytes | memoryview) -> bytes:
    """The sha2-256 multihash of ``data``: 0x12, 0x20, then the 32-byte digest."""
    return bytes((SHA2_256, _SHA2_256_LEN)) + hashlib.sha256(data).digest()


@dataclass(frozen=True, slots=True)
class CID:
    """A content identifier: version 0 (dag-pb, base58btc) or 1 (any codec here, base32).

    Only sha2-256 multihashes are accepted: Kubo's defaults use nothing else, and accepting a hash
    we cannot compute would mean accepting content we cannot verify.
    """

    version: int
    codec: int
    multihash: bytes

    def __post_init__(self) -> None:
        if self.version not in (0, 1):
            raise InvalidCIDError(f"unsupported CID version {self.version}")
        if self.version == 0 and self.codec != DAG_PB:
            raise InvalidCIDError("a CIDv0 always has codec dag-pb")
        if self.codec not in _CODEC_NAMES:
            raise InvalidCIDError(f"unsupported codec 0x{self.codec:x} (only dag-pb and raw)")
        if len(self.multihash) != 2 + _SHA2_256_LEN or self.multihash[:2] != bytes((SHA2_256, 32)):
            raise InvalidCIDError("unsupported multihash (only sha2-256 is supported)")

    # construction

    @classmethod
    def for_block(cls, data: bytes | memoryview, *, version: int, codec: int) -> CID:
        """The CID of a block's bytes."""
        return cls(version, codec, sha256_multihash(data))

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse a CID string: CIDv0 ('Qm...', base58btc) or CIDv1 in base32 ('b...') or base58 ('z...').

        Only canonical forms are accepted (lower-case base32 without padding, minimal varints), so
        one CID has one string; anything else raises InvalidCIDError with the reason.
        """
        if not isinstance(text, str):
            raise InvalidCIDError(f"not a CID: expected a string, got {type(text).__name__}")
        stripped = text.strip()
        if not stripped:
            raise InvalidCIDError(f"not a CID: {text!r} is blank")
        if len(stripped) > _MAX_CID_TEXT:
            raise InvalidCIDError(f"not a CID: {len(stripped)} characters (a CID has at most {_MAX_CID_TEXT})")
        if not stripped.isascii():
            raise InvalidCIDError(f"not a CID: {stripped!r} contains non-ASCII characters")
        text = stripped
        try:
            if len(text) == 46 and text.startswith("Qm"):
                return cls(0, DAG_PB, b58decode(text))
            if text[0] == "b":
                cid = cls.from_bytes(b32decode_lower(text[1:]))
                if str(cid) != text:
                    raise InvalidCIDError("not canonical lower-case base32")
                return cid
            if text[0] == "z":
                return cls.from_bytes(b58decode(text[1:]))
        except InvalidCIDError as exc:
            raise InvalidCIDError(f"not a supported CID: {text!r} ({exc})") from None
        except ValueError as exc:
            raise InvalidCIDError(f"not a CID: {text!r} ({exc})") from None
        raise InvalidCIDError(f"not a CID (expected 'Qm...', base32 'b...' or base58 'z...'): {text!r}")

    @classmethod
    def from_bytes(cls, data: bytes) -> CID:
        """Parse a binary CID that spans all of ``data``."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidCIDError(f"not a binary CID: expected bytes, got {type(data).__name__}")
        cid, end = cls.decode_prefix(data)
        if end != len(data):
            raise InvalidCIDError(f"{len(data) - end} trailing bytes after CID")
        return cid

    @classmethod
    def decode_prefix(cls, data: bytes | memoryview, pos: int = 0) -> tuple[CID, int]:
        """Parse a binary CID at the start of ``data[pos:]``; returns (cid, position after it)."""
        try:
            if len(data) - pos >= 2 and data[pos] == SHA2_256 and data[pos + 1] == _SHA2_256_LEN:
                end = pos + 2 + _SHA2_256_LEN
                if end > len(data):
                    raise InvalidCIDError("truncated CIDv0 multihash")
                return cls(0, DAG_PB, bytes(data[pos:end])), end
            version, p = _decode_minimal_varint(data, pos)
            codec, p = _decode_minimal_varint(data, p)
            code, p = _decode_minimal_varint(data, p)
            length, p = _decode_minimal_varint(data, p)
        except ValueError as exc:
            raise InvalidCIDError(f"malformed binary CID: {exc}") from None
        if version != 1:
            raise InvalidCIDError(f"unsupported binary CID version {version}")
        if code != SHA2_256 or length != _SHA2_256_LEN:
            raise InvalidCIDError(f"unsupported multihash 0x{code:x} of {length} bytes (only sha2-256, 32 bytes)")
        end = p + length
        if end > len(data):
            raise InvalidCIDError("truncated CID multihash")
        multihash = encode_varint(code) + encode_varint(length) + bytes(data[p:end])
        return cls(1, codec, multihash), end

    # representations

    def to_bytes(self) -> bytes:
        """Binary form: the bare multihash for v0; version, codec, multihash for v1."""
        if self.version == 0:
            return self.multihash
        return encode_varint(1) + encode_varint(self.codec) + self.multihash

    def __str__(self) -> str:
        if self.version == 0:
            return b58encode(self.multihash)
        return "b" + b32encode_lower(self.to_bytes())

    @property
    def digest(self) -> bytes:
        """The 32-byte sha2-256 digest inside the multihash."""
        return self.multihash[2:]

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES[self.codec]

    def matches(self, data: bytes | memoryview) -> bool:
        """True when ``data`` hashes to this CID's multihash."""
        return hashlib.sha256(data).digest() == self.digest


def as_cid(value: str | CID) -> CID:
    """Accept either a CID or its string form (the public API takes strings)."""
    return value if isinstance(value, CID) else CID.parse(value)
