"""Decoding piece by piece gives the bits of one float64 division per entry and one cast to float32."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.secagg.errors import SecAggInputError
from fedledger.secagg.layout import entry_weights, runs
from fedledger.secagg.ring import DECODE_PIECE, RingSpec, decode


def _reference(ring_sum: np.ndarray, coverage: np.ndarray, previous: np.ndarray, ring: RingSpec) -> np.ndarray:
    signed = ring_sum.view(ring.signed).astype(np.float64)
    divisor = np.where(coverage > 0, coverage.astype(np.float64) * ring.scale, 1.0)
    return np.where(coverage > 0, (signed / divisor).astype(np.float32), previous.astype(np.float32))


@pytest.mark.parametrize("bits", [32, 64])
def test_decode_equals_one_division_per_entry(bits):
    ring, rng = RingSpec(bits, 16), np.random.default_rng(bits)
    size = 2 * DECODE_PIECE + 777
    sums = rng.integers(-(2**30), 2**30, size).astype(np.int64).astype(ring.signed).view(ring.dtype)
    coverage = rng.integers(1, 5000, size).astype(np.int64)
    coverage[rng.permutation(size)[:3000]] = 0  # uncovered entries keep the previous model
    coverage[DECODE_PIECE : DECODE_PIECE + 10] = 0  # a run of them across a piece boundary
    # exact float32 midpoints (2k+1) * 2**-16 in [256, 512), weights whose reciprocal is inexact: a
    # division gives the midpoint itself (ties to even), a multiplication by 1/W often a neighbour
    ties = np.arange(DECODE_PIECE - 2000, DECODE_PIECE + 2000)
    odd = 2 * rng.integers(2**23, 2**24, ties.size) + 1
    coverage[ties] = rng.choice([49, 91, 99, 105, 117, 123, 197, 211, 245], ties.size)
    sums[ties] = (odd * coverage[ties]).astype(ring.signed).view(ring.dtype)
    previous = rng.standard_normal(size).astype(np.float32)
    got = decode(sums, coverage, previous, ring)
    assert got.dtype == np.float32
    assert np.array_equal(got.view(np.uint32), _reference(sums, coverage, previous, ring).view(np.uint32))
    assert np.array_equal(got[coverage == 0], previous[coverage == 0])


def test_decode_refuses_mismatched_lengths():
    ring = RingSpec(32, 16)
    with pytest.raises(SecAggInputError, match="differ in length"):
        decode(np.zeros(3, np.uint32), np.zeros(4, np.int64), np.zeros(3, np.float32), ring)


@pytest.mark.parametrize("with_scattered", [False, True])
def test_decode_from_weight_segments_equals_decode_from_the_dense_weights(with_scattered):
    ring, rng, size = RingSpec(32, 16), np.random.default_rng(9), 3 * DECODE_PIECE + 5
    windows = [np.arange(10, DECODE_PIECE + 300), np.arange(DECODE_PIECE, 2 * DECODE_PIECE + 1)]
    windows.append(np.arange(size - 70, size))
    members = [(p, runs(p), w) for p, w in zip(windows, (49, 91, 1), strict=True)]
    if with_scattered:
        scattered = rng.permutation(size)[:4000]
        members.append((scattered, None, 211))
    weights = entry_weights(size, members)
    dense = weights.dense()
    assert (dense == 0).any() and (dense > 0).any()
    sums = rng.integers(0, 2**32, size, dtype=np.uint32)
    previous = rng.standard_normal(size).astype(np.float32)
    got = decode(sums, weights, previous, ring)
    assert np.array_equal(got.view(np.uint32), _reference(sums, dense, previous, ring).view(np.uint32))
