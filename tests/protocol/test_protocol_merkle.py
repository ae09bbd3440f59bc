"""Merkle tree over update entries: roots against an independent SM3 (gmssl), proofs both ways."""

from __future__ import annotations

from gmssl import func
from gmssl import sm3 as gm_sm3
from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.protocol.merkle import EMPTY_ROOT, merkle_proof, merkle_root, verify_proof


def gm(data: bytes) -> bytes:
    return bytes.fromhex(gm_sm3.sm3_hash(func.bytes_to_list(data)))


def test_three_leaf_root_matches_hand_computation_with_gmssl() -> None:
    a, b, c = gm(b"a"), gm(b"b"), gm(b"c")
    expected = gm(b"\x01" + gm(b"\x01" + a + b) + c)  # odd last node promoted unchanged
    assert merkle_root([a, b, c]) == expected


def test_single_leaf_is_its_own_root_and_empty_has_fixed_root() -> None:
    leaf = gm(b"only")
    assert merkle_root([leaf]) == leaf
    assert merkle_root([]) == EMPTY_ROOT == gm(b"fedledger/empty-updates")


leaf_lists = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=17)


@settings(max_examples=60, deadline=None)
@given(leaf_lists, st.data())
def test_every_proof_verifies_and_a_changed_leaf_does_not(leaves: list[bytes], data: st.DataObject) -> None:
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, len(leaves) - 1))
    proof = merkle_proof(leaves, index)
    assert verify_proof(leaves[index], proof, root)
    tampered = bytes([leaves[index][0] ^ 1]) + leaves[index][1:]
    assert not verify_proof(tampered, proof, root)


@settings(max_examples=60, deadline=None)
@given(leaf_lists)
def test_dropping_or_duplicating_a_leaf_changes_the_root(leaves: list[bytes]) -> None:
    root = merkle_root(leaves)
    assert merkle_root([*leaves, leaves[-1]]) != root
    if len(leaves) > 1:
        assert merkle_root(leaves[:-1]) != root
