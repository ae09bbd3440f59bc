"""GmSSL 3.x DER encodings of SM9 encryption keys and ciphertexts.

As GmSSL writes them (checked against GmSSL 3.2 through gmssl-pyx in the tests):

- master public key: SEQUENCE { Ppub-e BIT STRING (04||x||y) }, PEM label 'SM9 ENC MASTER PUBLIC KEY';
- master key: SEQUENCE { ke INTEGER, Ppub-e BIT STRING };
- private key: SEQUENCE { de BIT STRING (129-byte G2 point), Ppub-e BIT STRING };
- ciphertext: SEQUENCE { EncryptedType INTEGER (0: KDF stream cipher), C1 BIT STRING (04||x||y),
  C3 OCTET STRING (32-byte MAC), C2 OCTET STRING }.

Decoders are strict DER (definite minimal lengths, exact tags, nothing trailing) and check every
point, so malformed input raises ``SM9EncodingError`` with the reason.
"""

from __future__ import annotations

from fedledger.sm9.curve import G1Point, G2Point
from fedledger.sm9.encoding import G1_OCTETS, G2_OCTETS, g1_from_bytes, g1_to_bytes, g2_from_bytes, g2_to_bytes
from fedledger.sm9.errors import SM9EncodingError

PEM_LABEL_ENC_MASTER_PUBLIC = "SM9 ENC MASTER PUBLIC KEY"
ENC_TYPE_XOR = 0
MAC_BYTES = 32

_SEQUENCE, _INTEGER, _BIT_STRING, _OCTET_STRING = 0x30, 0x02, 0x03, 0x04


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _length(len(value)) + value


def _integer(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")  # minimal, sign bit clear
    return _tlv(_INTEGER, body)


def _bit_string(data: bytes) -> bytes:
    return _tlv(_BIT_STRING, b"\x00" + data)


def _read(data: bytes, pos: int, tag: int, what: str) -> tuple[bytes, int]:
    """The value of the TLV at ``pos`` (which must carry ``tag``) and the position after it."""
    if pos + 2 > len(data) or data[pos] != tag:
        raise SM9EncodingError(f"{what}: expected DER tag {tag:#04x}")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        width = first & 0x7F
        if width == 0 or width > 4 or pos + width > len(data):
            raise SM9EncodingError(f"{what}: unsupported DER length")
        length = int.from_bytes(data[pos : pos + width], "big")
        if length < 0x80 or data[pos] == 0:
            raise SM9EncodingError(f"{what}: non-minimal DER length")
        pos += width
    if pos + length > len(data):
        raise SM9EncodingError(f"{what}: DER value runs past the end of the input")
    return data[pos : pos + length], pos + length


def _sequence(data: bytes, what: str) -> bytes:
    if not isinstance(data, bytes | bytearray):
        raise SM9EncodingError(f"{what}: expected bytes, not {type(data).__name__}")
    body, end = _read(bytes(data), 0, _SEQUENCE, what)
    if end != len(data):
        raise SM9EncodingError(f"{what}: trailing bytes after the DER SEQUENCE")
    return body


def _read_bit_string(body: bytes, pos: int, size: int, what: str) -> tuple[bytes, int]:
    value, pos = _read(body, pos, _BIT_STRING, what)
    if len(value) != size + 1 or value[0] != 0:
        raise SM9EncodingError(f"{what}: expected a BIT STRING of {size} bytes with 0 unused bits")
    return value[1:], pos


def _read_integer(body: bytes, pos: int, what: str) -> tuple[int, int]:
    value, pos = _read(body, pos, _INTEGER, what)
    if not value or value[0] & 0x80 or (len(value) > 1 and value[0] == 0 and not value[1] & 0x80):
        raise SM9EncodingError(f"{what}: not a minimal non-negative DER INTEGER")
    return int.from_bytes(value, "big"), pos


def _end(body: bytes, pos: int, what: str) -> None:
    if pos != len(body):
        raise SM9EncodingError(f"{what}: unexpected fields after the last one")


def enc_master_public_key_to_der(ppub: G1Point) -> bytes:
    return _tlv(_SEQUENCE, _bit_string(g1_to_bytes(ppub)))


def enc_master_public_key_from_der(data: bytes) -> G1Point:
    what = "SM9 encryption master public key"
    body = _sequence(data, what)
    point, pos = _read_bit_string(body, 0, G1_OCTETS, what)
    _end(body, pos, what)
    return g1_from_bytes(point, what)


def enc_master_key_to_der(ke: int, ppub: G1Point) -> bytes:
    return _tlv(_SEQUENCE, _integer(ke) + _bit_string(g1_to_bytes(ppub)))


def enc_master_key_from_der(data: bytes) -> tuple[int, G1Point]:
    what = "SM9 encryption master key"
    body = _sequence(data, what)
    ke, pos = _read_integer(body, 0, what)
    point, pos = _read_bit_string(body, pos, G1_OCTETS, what)
    _end(body, pos, what)
    return ke, g1_from_bytes(point, what)


def enc_private_key_to_der(de: G2Point, ppub: G1Point) -> bytes:
    return _tlv(_SEQUENCE, _bit_string(g2_to_bytes(de)) + _bit_string(g1_to_bytes(ppub)))


def enc_private_key_from_der(data: bytes) -> tuple[G2Point, G1Point]:
    what = "SM9 encryption private key"
    body = _sequence(data, what)
    de, pos = _read_bit_string(body, 0, G2_OCTETS, what)
    ppub, pos = _read_bit_string(body, pos, G1_OCTETS, what)
    _end(body, pos, what)
    return g2_from_bytes(de, what), g1_from_bytes(ppub, what)


def ciphertext_to_der(c1: G1Point, c3: bytes, c2: bytes) -> bytes:
    """SEQUENCE { EncryptedType 0, C1, C3, C2 } for the KDF stream cipher."""
    body = _integer(ENC_TYPE_XOR) + _bit_string(g1_to_bytes(c1)) + _tlv(_OCTET_STRING, c3) + _tlv(_OCTET_STRING, c2)
    return _tlv(_SEQUENCE, body)


def ciphertext_from_der(data: bytes) -> tuple[G1Point, bytes, bytes]:
    """(C1, C3, C2) from GmSSL's DER ciphertext; only the stream-cipher type (0) is accepted."""
    what = "SM9 ciphertext"
    body = _sequence(data, what)
    enc_type, pos = _read_integer(body, 0, what)
    if enc_type != ENC_TYPE_XOR:
        raise SM9EncodingError(f"{what}: EncryptedType {enc_type} is not supported (only 0, the KDF stream cipher)")
    c1, pos = _read_bit_string(body, pos, G1_OCTETS, what)
    c3, pos = _read(body, pos, _OCTET_STRING, what)
    c2, pos = _read(body, pos, _OCTET_STRING, what)
    _end(body, pos, what)
    if len(c3) != MAC_BYTES:
        raise SM9EncodingError(f"{what}: C3 must be {MAC_BYTES} bytes")
    if not c2:
        raise SM9EncodingError(f"{what}: C2 is empty")
    return g1_from_bytes(c1, f"{what} C1"), c3, c2
