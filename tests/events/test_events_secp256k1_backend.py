"""Roles sign and recover secp256k1 signatures (session payloads, approvals, transactions) many times a
round; eth-keys does it with libsecp256k1 (coincurve) when present, in microseconds instead of the pure
Python backend's milliseconds, with the very same bytes (RFC 6979 nonces, low s)."""

from __future__ import annotations

from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend, NativeECCBackend, get_backend

from fedledger.protocol.session_auth import payload_signer, sign_payload


def test_eth_keys_uses_libsecp256k1() -> None:
    assert isinstance(get_backend(), CoinCurveECCBackend)


def test_both_backends_make_and_recover_the_same_signatures() -> None:
    fast, slow = KeyAPI(CoinCurveECCBackend()), KeyAPI(NativeECCBackend())
    digest = bytes(range(32))
    for seed in (1, 2, 0x7F):
        key_bytes = bytes([seed]) * 32
        ours, theirs = (
            fast.PrivateKey(key_bytes).sign_msg_hash(digest),
            slow.PrivateKey(key_bytes).sign_msg_hash(digest),
        )
        assert ours.to_bytes() == theirs.to_bytes()
        assert ours.recover_public_key_from_msg_hash(digest) == theirs.recover_public_key_from_msg_hash(digest)
    payload = {"session_id": "s" * 32, "index": 2}
    auth = sign_payload(b"\x05" * 32, payload)
    assert (
        payload_signer(payload, auth)
        == KeyAPI(NativeECCBackend()).PrivateKey(b"\x05" * 32).public_key.to_checksum_address()
    )
