"""k-of-n threshold SM9: any k sign, k-1 cannot, tampering fails, cheaters are named, nonces used once."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.sm9 import SignMasterKey, SM9CheatingSignersError, SM9EncodingError, SM9ThresholdError, verify
from fedledger.sm9.curve import P1, g1_add, p1_mul
from fedledger.sm9.fields import N
from fedledger.sm9.pairing import pairing
from fedledger.sm9.signature import Signature
from fedledger.sm9.threshold import (
    Commitment,
    Coordinator,
    KeyShare,
    PartialSignature,
    Signer,
    ThresholdPublic,
    split_key,
    threshold_sign_local,
)

MASTER = SignMasterKey.generate()
MPK = MASTER.public_key
ID = "consortium:31337:0x5FbDB2315678afecb367f032d93F642f64180aa3"


@st.composite
def splits(draw: st.DrawFn) -> tuple[int, int, list[int]]:
    n = draw(st.integers(min_value=1, max_value=7))
    k = draw(st.integers(min_value=1, max_value=n))
    subset = draw(st.permutations(list(range(1, n + 1))))[:k]
    return k, n, subset


@settings(max_examples=8, deadline=None)
@given(splits(), st.binary(max_size=64))
def test_any_k_subset_signs_and_plain_verify_accepts(
    split: tuple[int, int, list[int]], message: bytes
) -> None:
    k, n, subset = split
    shares, public = split_key(MASTER, ID, k, n)
    signature = threshold_sign_local([shares[i - 1] for i in subset], public, message)
    der = signature.to_der()
    assert verify(MPK, ID, message, der)
    assert not verify(MPK, ID, message + b"!", der)  # tampered message
    tampered = bytearray(der)
    tampered[10] ^= 0x01  # tampered h
    assert not verify(MPK, ID, message, bytes(tampered))
    assert not verify(MPK, ID, message, Signature(signature.h, g1_add(signature.S, P1)))  # tampered S


@settings(max_examples=4, deadline=None)
@given(splits())
def test_k_minus_1_cannot_sign(split: tuple[int, int, list[int]]) -> None:
    k, n, subset = split
    if k < 2:
        return
    shares, public = split_key(MASTER, ID, k, n)
    few = [shares[i - 1] for i in subset[:-1]]
    with pytest.raises(SM9ThresholdError, match="at least k"):
        threshold_sign_local(few, public, b"m")
    # A coalition that pretends the threshold is k-1 passes the per-share checks but forges nothing.
    fake_public = ThresholdPublic(public.identity, k - 1, n, MPK, public.verification)
    fake_shares = [KeyShare(s.index, s.point, s.identity, k - 1, n, MPK) for s in few]
    signature = threshold_sign_local(fake_shares, fake_public, b"m")
    assert not verify(MPK, ID, b"m", signature)


@settings(max_examples=5, deadline=None)
@given(st.integers(min_value=2, max_value=4), st.data())
def test_corrupted_partials_are_named_and_retry_succeeds(k: int, data: st.DataObject) -> None:
    n = k + 2
    shares, public = split_key(MASTER, ID, k, n)
    signers = [Signer(s, public) for s in shares]
    bad = set(data.draw(st.lists(st.integers(1, n), min_size=1, max_size=2, unique=True)))
    coordinator = Coordinator(public, b"record")
    for signer in signers:
        coordinator.add_commitment(signer.commit(coordinator.session_id))
    partials = []
    for signer in signers:
        partial = signer.sign(coordinator.session_id, b"record", coordinator.commitments)
        if signer.index in bad:
            partial = PartialSignature(partial.index, partial.session_id, g1_add(partial.S, p1_mul(7)))
        partials.append(partial)
    with pytest.raises(SM9CheatingSignersError) as info:
        coordinator.aggregate(partials)
    assert info.value.indices == sorted(bad)
    retry = coordinator.retry_without(info.value.indices)
    honest = [s for s in signers if s.index not in bad]
    for signer in honest:
        retry.add_commitment(signer.commit(retry.session_id))
    with pytest.raises(SM9ThresholdError):
        retry.add_commitment(signers[min(bad) - 1].commit(retry.session_id))  # excluded
    partials = [s.sign(retry.session_id, b"record", retry.commitments) for s in honest]
    assert verify(MPK, ID, b"record", retry.aggregate(partials))


def test_nonce_is_used_once_and_sessions_do_not_mix() -> None:
    shares, public = split_key(MASTER, ID, 2, 3)
    s1, s2 = Signer(shares[0], public), Signer(shares[1], public)
    c1, c2 = s1.commit("sess-1"), s2.commit("sess-1")
    with pytest.raises(SM9ThresholdError, match="already committed"):
        s1.commit("sess-1")
    p1 = s1.sign("sess-1", b"m", [c1, c2])
    with pytest.raises(SM9ThresholdError, match="already signed"):
        s1.sign("sess-1", b"m2", [c1, c2])
    with pytest.raises(SM9ThresholdError, match="already committed"):
        s1.commit("sess-1")
    p2 = s2.sign("sess-1", b"m", [c1, c2])
    coordinator = Coordinator(public, b"m", session_id="sess-1")
    coordinator.add_commitment(c1)
    coordinator.add_commitment(c2)
    assert verify(MPK, ID, b"m", coordinator.aggregate([p1, p2]))
    with pytest.raises(SM9ThresholdError):
        coordinator.aggregate([p1])  # a signer of the session is missing
    with pytest.raises(SM9ThresholdError):
        Signer(shares[2], public).sign("sess-1", b"m", [c1, c2])  # never committed
    with pytest.raises(SM9ThresholdError, match="at least k"):
        _ = Coordinator(public, b"m").commitments


def test_signer_refuses_commitment_lists_without_its_own() -> None:
    shares, public = split_key(MASTER, ID, 2, 3)
    s1, s2, s3 = (Signer(s, public) for s in shares)
    s1.commit("x")
    c2, c3 = s2.commit("x"), s3.commit("x")
    forged = Commitment(1, "x", c3.D, c3.E)
    with pytest.raises(SM9ThresholdError, match="own commitment"):
        s1.sign("x", b"m", [forged, c2])


def test_messages_round_trip_through_json() -> None:
    shares, public = split_key(MASTER, ID, 2, 2)
    signers = [Signer(s, public) for s in shares]
    commitments = [Commitment.from_json(s.commit("json").to_json()) for s in signers]
    partials = [
        PartialSignature.from_json(json.dumps(s.sign("json", b"m", commitments).to_dict())) for s in signers
    ]
    public2 = ThresholdPublic.from_json(public.to_json())
    coordinator = Coordinator(public2, b"m", session_id="json")
    for c in commitments:
        coordinator.add_commitment(c)
    assert verify(MPK, ID, b"m", coordinator.aggregate(partials))
    bad = commitments[0].to_dict()
    bad["D"] = bad["D"][:-2] + ("00" if bad["D"][-2:] != "00" else "01")
    with pytest.raises(SM9EncodingError):
        Commitment.from_dict(bad)
    with pytest.raises(SM9EncodingError):
        PartialSignature.from_json("[1, 2]")


def test_verification_data_equals_the_pairing_and_validates() -> None:
    shares, public = split_key(MASTER, ID, 3, 4)
    q, _ = MPK.identity_point(ID)
    for share in shares:
        assert public.verification[share.index] == pairing(share.point, q)
    public.validate()
    swapped = dict(public.verification)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    with pytest.raises(SM9ThresholdError):
        ThresholdPublic(public.identity, 3, 4, MPK, swapped).validate()


def test_shares_are_points_not_scalars() -> None:
    shares, _ = split_key(MASTER, ID, 2, 3)
    for share in shares:
        assert not hasattr(share, "scalar")
        assert share.point is not None and len(share.point) == 2
        assert "hidden" in repr(share)
    assert int(N) > 0


def test_bad_parameters() -> None:
    for k, n in ((0, 3), (4, 3), (1, 256)):
        with pytest.raises(SM9ThresholdError):
            split_key(MASTER, ID, k, n)
