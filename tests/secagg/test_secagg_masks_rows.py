"""Unmasking by strided row blocks, one piece at a time, adds exactly what entry-by-entry adding does."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.secagg import prg
from fedledger.secagg.layout import add_rows, coverage_weights, row_blocks, row_blocks_within, runs
from fedledger.secagg.masks import add_unmasked, self_mask
from fedledger.secagg.prg import PIECE_BYTES
from fedledger.secagg.ring import RingSpec


def _rows(first: int, count: int, width: int, row_length: int, window: int) -> np.ndarray:
    """Positions of a window of ``window`` columns in ``count`` rows of a matrix (a sub-model's weight)."""
    return np.concatenate([first + r * row_length + np.arange(width, width + window) for r in range(count)])


LENGTH = 400_000
LAYOUTS = {
    "matrix window": _rows(1000, 300, 100, 1024, 512),
    "wrapped rows": np.concatenate([_rows(0, 200, 0, 1024, 700)[90 * 700 :], _rows(0, 200, 0, 1024, 700)[: 90 * 700]]),
    "mixed runs": np.concatenate([np.arange(50, 90), _rows(2000, 90, 3, 2048, 1500), np.arange(300_000, 399_990)]),
    "full": np.arange(LENGTH),
    "rows to the end": _rows(LENGTH - 300 * 1024, 300, 1024 - 300, 1024, 300),  # the last row ends the vector
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_row_blocks_cover_exactly_the_runs(name):
    positions = LAYOUTS[name]
    blocks = row_blocks(runs(positions))
    assert len(blocks) <= 4  # a few strided blocks instead of one run per row
    values = (np.arange(positions.size, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)).astype(np.uint32)
    fast, slow = np.zeros(LENGTH, np.uint32), np.zeros(LENGTH, np.uint32)
    add_rows(fast, blocks, values)
    np.add.at(slow, positions, values)
    assert np.array_equal(fast, slow)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_pieces_of_row_blocks_add_up_to_the_whole(name):
    positions = LAYOUTS[name]
    blocks = row_blocks(runs(positions))
    values = np.random.default_rng(3).integers(0, 2**32, positions.size, dtype=np.uint32)
    expected = np.zeros(LENGTH, np.uint32)
    np.add.at(expected, positions, values)
    for piece in (1, 511, 512, 1000, 65_536):
        total = np.zeros(LENGTH, np.uint32)
        for start in range(0, positions.size, piece):
            stop = min(start + piece, positions.size)
            add_rows(total, row_blocks_within(blocks, start, stop), values[start:stop])
        assert np.array_equal(total, expected), piece


def test_runs_are_contiguous_stretches_and_none_when_too_short():
    contiguous = np.concatenate([np.arange(10, 300), np.arange(500, 900)])
    assert runs(contiguous) == ([10, 500], [0, 290], [290, 400])
    assert runs(np.random.default_rng(1).permutation(1000)[:400]) is None  # fancy indexing is faster


def test_rows_of_different_lengths_or_steps_are_not_merged():
    positions = np.concatenate([np.arange(0, 100), np.arange(200, 300), np.arange(400, 470), np.arange(480, 550)])
    assert row_blocks(runs(positions)) == [(0, 200, 0, 100, 2), (400, 80, 200, 70, 2)]
    backwards = np.concatenate([np.arange(1000, 1100), np.arange(500, 600), np.arange(0, 100)])  # rows out of order
    assert [b[4] for b in row_blocks(runs(backwards))] == [1, 1, 1]


@pytest.mark.parametrize("piece_bytes", [4096, 1 << 16, PIECE_BYTES])
@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("name", ["matrix window", "wrapped rows", "full", "rows to the end"])
def test_add_unmasked_equals_subtracting_the_whole_self_mask(bits, name, piece_bytes, monkeypatch):
    monkeypatch.setattr(prg, "PIECE_BYTES", piece_bytes)  # pieces that cut rows anywhere
    ring, seed = RingSpec(bits, 16), bytes(range(7, 39))
    positions = LAYOUTS[name]
    dtype = np.dtype(ring.dtype)
    masked = np.random.default_rng(5).integers(0, np.iinfo(dtype).max, positions.size, dtype=dtype, endpoint=True)
    start = np.random.default_rng(6).integers(0, np.iinfo(dtype).max, LENGTH, dtype=dtype, endpoint=True)
    expected = start.copy()
    np.add.at(expected, positions, masked - self_mask(seed, 4, 2, positions.size, ring))
    for blocks in (row_blocks(runs(positions)), None):
        total = start.copy()
        add_unmasked(total, masked, seed, 4, 2, positions, blocks, ring)
        assert np.array_equal(total, expected)
    other_seed = start.copy()
    add_unmasked(other_seed, masked, bytes(32), 4, 2, positions, None, ring)
    assert not np.array_equal(other_seed, expected)


def test_coverage_weights_by_segments_equal_adding_weights_entry_by_entry():
    members = [(LAYOUTS[name], 10 + k) for k, name in enumerate(sorted(LAYOUTS))]
    scattered = np.random.default_rng(2).permutation(LENGTH)[:5000]
    expected = np.zeros(LENGTH, np.int64)
    for positions, weight in [*members, (scattered, 7)]:
        np.add.at(expected, positions, weight)
    got = coverage_weights(LENGTH, [(p, runs(p), w) for p, w in members] + [(scattered, None, 7)])
    assert got.dtype == np.int64 and np.array_equal(got, expected)
    alone = coverage_weights(LENGTH, [(scattered, None, 7)])
    assert np.array_equal(alone, np.where(np.isin(np.arange(LENGTH), scattered), 7, 0))
    assert not coverage_weights(100, []).any()
