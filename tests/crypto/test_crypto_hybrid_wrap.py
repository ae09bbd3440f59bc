"""Hybrid key wrapping: only the addressed member opens a wrapped key, only with both of its keys,
and one flipped bit anywhere in the entry or its context makes it unopenable.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

import pytest

from fedledger.envelope.aead import AES_256_GCM, SM4_GCM, Suite
from fedledger.envelope.errors import EnvelopeAccessError, EnvelopeKeyError
from fedledger.envelope.hybrid import WrappedKey, combine, unwrap, wrap
from fedledger.envelope.recipients import Recipient, RecipientKeys
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key

CONTEXT = b"fixed-header-of-one-file"


@pytest.fixture(params=[AES_256_GCM, SM4_GCM], ids=lambda s: s.name)
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.param


def test_the_addressed_member_unwraps(kgc: EncryptMasterKey, members: list[RecipientKeys], suite: Suite) -> None:
    key = os.urandom(32)
    for member in members:
        assert unwrap(wrap(key, member.public, kgc.public_key, suite, CONTEXT), member, suite, CONTEXT) == key


def test_wrapping_is_randomised(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    key = os.urandom(32)
    a, b = (wrap(key, members[0].public, kgc.public_key, AES_256_GCM, CONTEXT) for _ in range(2))
    assert a.sm9_capsule != b.sm9_capsule and a.mlkem_ciphertext != b.mlkem_ciphertext and a.sealed_key != b.sealed_key


def test_another_member_and_an_outsider_cannot_unwrap(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    entry = wrap(os.urandom(32), members[0].public, kgc.public_key, AES_256_GCM, CONTEXT)
    outsider = RecipientKeys.generate(extract_encrypt_key(EncryptMasterKey.generate(), "hospital-0"))
    for other in (members[1], outsider):
        with pytest.raises(EnvelopeAccessError):
            unwrap(entry, other, AES_256_GCM, CONTEXT)
    # Even relabelled as the addressee, another member's keys open nothing.
    relabelled = replace(entry, identity=members[1].identity, key_id=members[1].public.key_id)
    with pytest.raises(EnvelopeAccessError):
        unwrap(relabelled, members[1], AES_256_GCM, CONTEXT)


def test_breaking_one_kem_is_not_enough(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    """Holding only the SM9 key (an ML-KEM key of one's own) or only the ML-KEM key (an SM9 key from
    another KGC) for the same identity opens nothing: the KEK needs both shared secrets."""
    victim = members[0]
    entry = wrap(os.urandom(32), victim.public, kgc.public_key, AES_256_GCM, CONTEXT)
    sm9_only = RecipientKeys.generate(victim.sm9_key)  # right SM9 key, wrong ML-KEM key
    other_kgc_key = extract_encrypt_key(EncryptMasterKey.generate(), victim.identity)
    seed = victim._mlkem.private_bytes_raw()  # the test plays the adversary who broke ML-KEM
    mlkem_only = RecipientKeys(other_kgc_key, seed)  # right ML-KEM key, wrong SM9 key
    for half in (sm9_only, mlkem_only):
        forged = replace(entry, key_id=half.public.key_id)
        with pytest.raises(EnvelopeAccessError):
            unwrap(forged, half, AES_256_GCM, CONTEXT)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("field", ["sm9_capsule", "mlkem_ciphertext", "sealed_key"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_flipped_bit_in_any_field_is_refused(
    kgc: EncryptMasterKey, members: list[RecipientKeys], suite: Suite, field: str, where: str
) -> None:
    entry = wrap(os.urandom(32), members[0].public, kgc.public_key, suite, CONTEXT)
    value = getattr(entry, field)
    bit = {"first": 0, "middle": len(value) * 4 + 3, "last": len(value) * 8 - 1}[where]
    with pytest.raises(EnvelopeAccessError):
        unwrap(replace(entry, **{field: _flip(value, bit)}), members[0], suite, CONTEXT)


def test_the_context_and_the_suite_are_bound(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    entry = wrap(os.urandom(32), members[0].public, kgc.public_key, AES_256_GCM, CONTEXT)
    with pytest.raises(EnvelopeAccessError):
        unwrap(entry, members[0], AES_256_GCM, _flip(CONTEXT, 5))
    with pytest.raises(EnvelopeAccessError):
        unwrap(entry, members[0], SM4_GCM, CONTEXT)


def test_combiner_is_sha3_over_every_input_in_order() -> None:
    parts = [os.urandom(32), os.urandom(32), os.urandom(64), os.urandom(1088), os.urandom(1184)]
    identity = b"hospital-9"
    expected = hashlib.sha3_256(b"fedledger/hybrid-kem/v1" + b"".join(parts) + b"\x00\x0a" + identity).digest()
    assert combine(*parts, identity) == expected
    for i in range(len(parts)):
        changed = list(parts)
        changed[i] = _flip(changed[i], 0)
        assert combine(*changed, identity) != expected
    assert combine(*parts, b"hospital-8") != expected


def test_malformed_entries_and_keys_are_refused(kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    entry = wrap(os.urandom(32), members[0].public, kgc.public_key, AES_256_GCM, CONTEXT)
    with pytest.raises(EnvelopeKeyError):
        replace(entry, sealed_key=entry.sealed_key[:-1])
    with pytest.raises(EnvelopeKeyError):
        wrap(os.urandom(16), members[0].public, kgc.public_key, AES_256_GCM, CONTEXT)
    with pytest.raises(EnvelopeKeyError):
        Recipient(b"x", b"\x00" * 10)
    assert isinstance(entry, WrappedKey)
