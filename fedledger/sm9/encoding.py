"""Byte encodings shared with GmSSL and the standard: point octets, the DER signature, the PEM master key.

Every decoder is strict: exact lengths and tags, coordinates below p, points on their curve. Anything
else raises ``SM9EncodingError`` with the reason, so callers can tell malformed input from an invalid
signature. The JSON field readers at the end do the same for the threshold protocol's messages.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from gmpy2 import mpz

from fedledger.sm9.curve import G1Point, G2Point, g1_is_on_curve, g2_in_subgroup
from fedledger.sm9.errors import SM9EncodingError
from fedledger.sm9.fields import N, P

G1_OCTETS = 65
G2_OCTETS = 129
SIGNATURE_DER_LEN = 104
MASTER_PUBLIC_KEY_DER_LEN = 136
PEM_LABEL_SIGN_MASTER_PUBLIC = "SM9 SIGN MASTER PUBLIC KEY"

_SIG_PREFIX = bytes.fromhex("30660420")
_SIG_MIDDLE = bytes.fromhex("03420004")
_MPK_PREFIX = bytes.fromhex("308185038182")


def _fp(data: bytes, what: str) -> mpz:
    value = int.from_bytes(data, "big")
    if value >= P:
        raise SM9EncodingError(f"{what}: coordinate is not below the field prime")
    return mpz(value)


def g1_to_bytes(pt: G1Point) -> bytes:
    """04 || x || y (65 bytes)."""
    if pt is None:
        raise SM9EncodingError("the point at infinity has no octet encoding here")
    return b"\x04" + int(pt[0]).to_bytes(32, "big") + int(pt[1]).to_bytes(32, "big")


def g1_from_bytes(data: bytes, what: str = "G1 point") -> G1Point:
    if len(data) != G1_OCTETS or data[0] != 4:
        raise SM9EncodingError(f"{what}: expected 65 bytes starting 04 (uncompressed), got {len(data)} bytes")
    pt = (_fp(data[1:33], what), _fp(data[33:65], what))
    if not g1_is_on_curve(pt):
        raise SM9EncodingError(f"{what}: point is not on the curve y^2 = x^3 + 5")
    return pt


def g2_to_bytes(pt: G2Point) -> bytes:
    """04 || x1 || x0 || y1 || y0 (129 bytes): the u coefficient first, as GmSSL and the standard."""
    if pt is None:
        raise SM9EncodingError("the point at infinity has no octet encoding here")
    (x0, x1), (y0, y1) = pt
    return b"\x04" + b"".join(int(c).to_bytes(32, "big") for c in (x1, x0, y1, y0))


def g2_from_bytes(data: bytes, what: str = "G2 point") -> G2Point:
    if len(data) != G2_OCTETS or data[0] != 4:
        raise SM9EncodingError(
            f"{what}: expected 129 bytes starting 04 (uncompressed), got {len(data)} bytes"
        )
    x1, x0, y1, y0 = (_fp(data[1 + 32 * i : 33 + 32 * i], what) for i in range(4))
    pt: G2Point = ((x0, x1), (y0, y1))
    if not g2_in_subgroup(pt):
        raise SM9EncodingError(f"{what}: point is not in G2 (not on the twist or wrong order)")
    return pt


def signature_to_der(h: int, s: G1Point) -> bytes:
    """SEQUENCE { h OCTET STRING (32), S BIT STRING (0 unused bits, 04||x||y) }: 104 bytes."""
    return _SIG_PREFIX + int(h).to_bytes(32, "big") + b"\x03\x42\x00" + g1_to_bytes(s)


def signature_from_der(data: bytes) -> tuple[int, G1Point]:
    """Parse the DER signature; h must lie in [1, N-1] and S on the curve (the standard's checks)."""
    if not isinstance(data, bytes | bytearray):
        raise SM9EncodingError(f"an SM9 signature is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) != SIGNATURE_DER_LEN:
        raise SM9EncodingError(f"SM9 signature DER must be {SIGNATURE_DER_LEN} bytes, got {len(data)}")
    if data[:4] != _SIG_PREFIX or data[36:40] != _SIG_MIDDLE:
        raise SM9EncodingError("SM9 signature DER: unexpected tags (expected 30 66 04 20 ... 03 42 00 04)")
    h = int.from_bytes(data[4:36], "big")
    if not 1 <= h < N:
        raise SM9EncodingError("SM9 signature: h is outside [1, N-1]")
    return h, g1_from_bytes(data[39:], "SM9 signature point S")


def master_public_key_to_der(ppub: G2Point) -> bytes:
    return _MPK_PREFIX + b"\x00" + g2_to_bytes(ppub)


def master_public_key_from_der(data: bytes) -> G2Point:
    if len(data) != MASTER_PUBLIC_KEY_DER_LEN or data[:6] != _MPK_PREFIX or data[6] != 0:
        raise SM9EncodingError(
            f"SM9 sign master public key DER must be {MASTER_PUBLIC_KEY_DER_LEN} bytes "
            "starting 30 81 85 03 81 82 00"
        )
    return g2_from_bytes(data[7:], "SM9 sign master public key")


def pem_encode(label: str, der: bytes) -> str:
    body = base64.b64encode(der).decode("ascii")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def pem_decode(label: str, text: str | bytes) -> bytes:
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise SM9EncodingError(f"PEM '{label}': not ASCII text") from exc
    match = re.search(
        rf"-----BEGIN {re.escape(label)}-----\s*([A-Za-z0-9+/=\s]*?)\s*-----END {re.escape(label)}-----", text
    )
    if match is None:
        raise SM9EncodingError(f"no PEM block labelled '{label}' found")
    try:
        return base64.b64decode("".join(match.group(1).split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SM9EncodingError(f"PEM '{label}': invalid base64") from exc


# JSON field readers for the threshold messages and public data: each names the field it rejects.


def hex_field(data: dict[str, Any], name: str, what: str) -> bytes:
    value = data.get(name)
    if not isinstance(value, str):
        raise SM9EncodingError(f"{what}: field '{name}' must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise SM9EncodingError(f"{what}: field '{name}' is not valid hex") from exc


def int_field(data: dict[str, Any], name: str, what: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise SM9EncodingError(f"{what}: field '{name}' must be an integer")
    return value


def str_field(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise SM9EncodingError(f"{what}: field '{name}' must be a string")
    return value


def json_object(text: str | bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SM9EncodingError(f"{what}: not valid JSON") from exc
    if not isinstance(data, dict):
        raise SM9EncodingError(f"{what}: expected a JSON object")
    return data
