"""Building blocks: ring encoding, position-indexed masks, Shamir, hybrid sealing, messages, layout."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.fl import ModelSpec, extract_with_map, initial_global_state, make_index_map
from fedledger.secagg.errors import InsufficientShares, SecAggInputError
from fedledger.secagg.hybrid import HybridKeyPair, open_sealed, seal
from fedledger.secagg.layout import flat_positions, flatten_state
from fedledger.secagg.messages import AdvertiseKeys, MaskedInput, Reveal, RoundSetup
from fedledger.secagg.prg import derive_key, mask_at
from fedledger.secagg.ring import RingSpec, choose_ring, decode, encode, to_ring
from fedledger.secagg.shamir import combine, consistent, split


def test_ring_is_32_bits_when_the_bound_allows_and_64_otherwise():
    assert choose_ring(10, 100, 1.0, 16).bits == 32  # 10 * 100 * 65537 < 2**31
    assert choose_ring(10, 100_000, 1.0, 16).bits == 64
    with pytest.raises(SecAggInputError, match="exceeds 2\\*\\*53"):
        choose_ring(1000, 2**30, 1.0, 16)
    with pytest.raises(SecAggInputError, match="leaves float32"):
        choose_ring(2, 1, 1024.0, 16)


def test_negative_sums_wrap_and_decode():
    ring = RingSpec(32, 16)
    a = encode(np.array([-1.5, 0.25], dtype=np.float32), 3, ring, 2.0)
    b = encode(np.array([0.5, -0.75], dtype=np.float32), 1, ring, 2.0)
    out = decode(a + b, np.array([4, 4]), np.zeros(2, np.float32), ring)
    assert out.tolist() == [(-4.5 + 0.5) / 4, (0.75 - 0.75) / 4]


def test_encode_refuses_bad_weights():
    with pytest.raises(SecAggInputError, match="positive integer"):
        encode(np.zeros(3, np.float32), 0, RingSpec(32, 8), 1.0)


@pytest.mark.parametrize("bits", [32, 64])
def test_mask_values_depend_on_the_global_position_only(bits):
    ring, key = RingSpec(bits, 16), bytes(range(32))
    full = mask_at(key, np.arange(200), ring)
    picked = np.array([197, 3, 64, 65, 130])
    assert np.array_equal(mask_at(key, picked, ring), full[picked])
    other = mask_at(derive_key(key, "pair", 1), np.arange(200), ring)
    assert not np.array_equal(other, full)


def test_derived_keys_use_the_whole_secret():
    secret = bytes(32)
    assert derive_key(secret, "pair", 1) != derive_key(secret[:-1] + b"\x01", "pair", 1)
    assert derive_key(secret, "pair", 1) != derive_key(secret, "pair", 2)
    with pytest.raises(SecAggInputError, match="256 bits"):
        derive_key(bytes(4), "pair", 1)


def test_any_t_shares_rebuild_and_t_minus_1_do_not():
    secret = bytes(range(200))  # several chunks
    shares = split(secret, 3, [1, 2, 3, 4, 5])
    assert combine({x: shares[x] for x in (2, 4, 5)}, 3) == secret
    assert combine({x: shares[x] for x in (1, 3, 5)}, 3) == secret
    with pytest.raises(InsufficientShares):
        combine({x: shares[x] for x in (1, 2)}, 3)
    assert consistent(shares, 3)
    shares[4] = shares[4][:-1] + bytes([shares[4][-1] ^ 1])
    assert not consistent(shares, 3)


def test_sealed_shares_open_only_for_their_recipient_from_their_sender():
    alice, bob, eve = HybridKeyPair.generate(), HybridKeyPair.generate(), HybridKeyPair.generate()
    sealed = seal(alice, bob.public, (1, 2), 7, b"shares")
    assert open_sealed(bob, alice.public, (1, 2), 7, sealed) == b"shares"
    for opener, sender, ids, rnd, blob in [
        (eve, alice.public, (1, 2), 7, sealed),  # another recipient
        (bob, eve.public, (1, 2), 7, sealed),  # claimed from another sender
        (bob, alice.public, (3, 2), 7, sealed),  # other ids
        (bob, alice.public, (1, 2), 8, sealed),  # other round
        (bob, alice.public, (1, 2), 7, sealed[:100] + bytes([sealed[100] ^ 1]) + sealed[101:]),  # KEM ct bit
        (bob, alice.public, (1, 2), 7, sealed[:-1] + bytes([sealed[-1] ^ 1])),  # AEAD bit
    ]:
        with pytest.raises(SecAggInputError, match="do not open"):
            open_sealed(opener, sender, ids, rnd, blob)


def test_messages_round_trip_and_refuse_truncation_and_trailing_bytes():
    keys = HybridKeyPair.generate(), HybridKeyPair.generate()
    advert = AdvertiseKeys(3, 2, keys[0].public, keys[1].public)
    assert AdvertiseKeys.from_bytes(advert.to_bytes()) == advert
    masked = MaskedInput(3, 2, np.arange(5, dtype=np.uint32))
    again = MaskedInput.from_bytes(masked.to_bytes())
    assert np.array_equal(again.values, masked.values) and again.digest() == masked.digest()
    reveal = Reveal(3, 2, bytes(32), {1: b"a", 2: b"b"}, {4: b"c"})
    assert Reveal.from_bytes(reveal.to_bytes()) == reveal
    data = reveal.to_bytes()
    for broken in (data[:-1], data + b"\x00", b"FLSA1masked" + data[11:]):
        with pytest.raises(SecAggInputError):
            Reveal.from_bytes(broken)


def test_setup_refuses_positions_outside_the_model_and_a_threshold_of_one():
    ring = RingSpec(32, 16)
    with pytest.raises(SecAggInputError, match="outside the model"):
        RoundSetup(0, 2, ring, 10, {1: 1, 2: 1}, {1: np.arange(10), 2: np.array([3, 10])})
    with pytest.raises(SecAggInputError, match="threshold 1"):
        RoundSetup(0, 1, ring, 10, {1: 1, 2: 1}, {1: np.arange(10), 2: np.arange(3)})


def test_flat_positions_pick_exactly_the_sub_model_entries():
    spec = ModelSpec("mlp", (6,), 3, (8, 8))
    global_state = initial_global_state(spec, 5)
    index_map = make_index_map(spec, 0.25, "rolling", 5)
    sub = extract_with_map(global_state, index_map)
    positions = flat_positions(index_map.global_shapes, index_map.indices)
    assert np.array_equal(flatten_state(global_state)[positions], flatten_state(sub))
    assert positions.size == sum(t.numel() for t in sub.values())


def test_to_ring_wraps_two_complement():
    assert to_ring(np.array([-1]), RingSpec(32, 0)).tolist() == [2**32 - 1]


@pytest.mark.parametrize("by_global", [False, True])
def test_pair_masks_by_runs_equal_pair_masks_entry_by_entry(by_global):
    from fedledger.secagg.layout import runs
    from fedledger.secagg.masks import apply_pair_mask

    ring, secret = RingSpec(32, 16), bytes(range(32))
    own = np.concatenate([np.arange(3, 200), np.arange(260, 500), np.arange(700, 990)])
    other = np.concatenate([np.arange(0, 100), np.arange(150, 300), np.arange(480, 800)])
    size = 1000 if by_global else own.size
    fast, slow = np.zeros(size, np.uint32), np.zeros(size, np.uint32)
    apply_pair_mask(fast, secret, 4, ring, +1, (own, runs(own)), (other, runs(other)), 1000, by_global=by_global)
    apply_pair_mask(slow, secret, 4, ring, +1, (own, None), (other, None), 1000, by_global=by_global)
    assert np.count_nonzero(fast) == np.intersect1d(own, other).size
    assert np.array_equal(fast, slow)
    apply_pair_mask(fast, secret, 4, ring, -1, (own, runs(own)), (other, runs(other)), 1000, by_global=by_global)
    assert not fast.any()
