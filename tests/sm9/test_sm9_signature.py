"""Sign/verify behaviour, the standard's rejection rules, encodings and key handling."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.sm9 import (
    Signature,
    SignMasterKey,
    SignMasterPublicKey,
    SM9EncodingError,
    SM9KeyError,
    extract_sign_key,
    sign,
    verify,
)
from fedledger.sm9.curve import P1, g1_add
from fedledger.sm9.fields import N, P
from fedledger.sm9.hashing import h1

MASTER = SignMasterKey.generate()
MPK = MASTER.public_key
ALICE = extract_sign_key(MASTER, "inst:alice")


@settings(max_examples=6, deadline=None)
@given(st.binary(max_size=200), st.text(min_size=1, max_size=40))
def test_sign_then_verify(message: bytes, identity: str) -> None:
    key = extract_sign_key(MASTER, identity)
    signature = sign(key, message)
    der = signature.to_der()
    assert len(der) == 104 and der[:4] == bytes.fromhex("30660420")
    assert Signature.from_der(der) == signature
    assert verify(MPK, identity, message, der)
    assert not verify(MPK, identity, message + b"\x00", der)
    assert not verify(MPK, identity + "x", message, der)


def test_verification_rejects_h_outside_range_and_bad_s() -> None:
    signature = sign(ALICE, b"m")
    assert verify(MPK, "inst:alice", b"m", signature)
    assert not verify(MPK, "inst:alice", b"m", Signature(0, signature.S))
    assert not verify(MPK, "inst:alice", b"m", Signature(int(N), signature.S))
    assert not verify(MPK, "inst:alice", b"m", Signature(signature.h, None))  # S at infinity
    off_curve = (signature.S[0], (signature.S[1] + 1) % P)
    assert not verify(MPK, "inst:alice", b"m", Signature(signature.h, off_curve))
    assert not verify(MPK, "inst:alice", b"m", Signature(signature.h, g1_add(signature.S, P1)))
    assert not verify(MPK, "inst:alice", b"m", Signature((signature.h + 1) % int(N) or 1, signature.S))
    other = SignMasterKey.generate().public_key
    assert not verify(other, "inst:alice", b"m", signature)


def test_der_with_bad_h_or_point_is_an_encoding_error() -> None:
    der = bytearray(sign(ALICE, b"m").to_der())
    for bad in (
        bytes(der[:-1]),
        bytes(der) + b"\x00",
        b"\x31" + bytes(der[1:]),
        bytes(der[:4]) + b"\x00" * 32 + bytes(der[36:]),  # h = 0
        bytes(der[:4]) + int(N).to_bytes(32, "big") + bytes(der[36:]),  # h = N
        bytes(der[:40])
        + bytes(der[40:72])
        + ((int.from_bytes(der[72:], "big") + 1) % int(P)).to_bytes(32, "big"),
        bytes(der[:39]) + b"\x03" + bytes(der[40:]),  # compressed tag
    ):
        with pytest.raises(SM9EncodingError):
            Signature.from_der(bad)
        with pytest.raises(SM9EncodingError):
            verify(MPK, "inst:alice", b"m", bad)
    with pytest.raises(SM9EncodingError):
        verify(MPK, "inst:alice", "text message", bytes(der))  # type: ignore[arg-type]


def test_master_public_key_pem_round_trip_and_rejections() -> None:
    pem = MPK.to_pem()
    assert pem.startswith("-----BEGIN SM9 SIGN MASTER PUBLIC KEY-----\n")
    assert all(len(line) <= 64 for line in pem.splitlines())
    assert SignMasterPublicKey.from_pem(pem) == MPK
    der = MPK.to_der()
    assert len(der) == 136 and der[:8] == bytes.fromhex("3081850381820004")
    broken = bytearray(der)
    broken[-1] ^= 1  # no longer on the twist
    with pytest.raises(SM9EncodingError):
        SignMasterPublicKey.from_der(bytes(broken))
    with pytest.raises(SM9EncodingError):
        SignMasterPublicKey.from_pem(
            "-----BEGIN SM9 SIGN MASTER PUBLIC KEY-----\n!!\n-----END SM9 SIGN MASTER PUBLIC KEY-----"
        )
    with pytest.raises(SM9EncodingError):
        SignMasterPublicKey.from_pem("no pem here")


def test_t1_zero_is_refused_as_the_standard_says() -> None:
    identity = "inst:unlucky"
    ks = (-h1(identity.encode() + b"\x01")) % int(N)
    master = SignMasterKey(ks)
    with pytest.raises(SM9KeyError, match="new master key"):
        extract_sign_key(master, identity)
    with pytest.raises(SM9KeyError):
        master.public_key.identity_point(identity)


def test_reprs_hide_secrets() -> None:
    secret_hex = f"{MASTER.secret_scalar():x}"
    d_hex = f"{int(ALICE.point[0]):x}"
    for text in (repr(MASTER), str(MASTER), repr(ALICE), str(ALICE)):
        assert secret_hex not in text.lower() and d_hex not in text.lower()
        assert "hidden" in text


def test_master_secret_range() -> None:
    for bad in (0, int(N), -1):
        with pytest.raises(SM9KeyError):
            SignMasterKey(bad)
