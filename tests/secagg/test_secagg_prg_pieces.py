"""The mask stream taken piece by piece is the same stream, word for word, as taken whole."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.secagg import prg
from fedledger.secagg.prg import PIECE_BYTES, stream, stream_pieces
from fedledger.secagg.ring import RingSpec


@pytest.mark.parametrize("piece_bytes", [4096, PIECE_BYTES])
@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("extra", [0, 1, 3, 5])
def test_pieces_concatenate_to_the_whole_stream(bits, extra, piece_bytes, monkeypatch):
    monkeypatch.setattr(prg, "PIECE_BYTES", piece_bytes)
    ring, key = RingSpec(bits, 16), bytes(range(1, 33))
    per_piece = piece_bytes // (bits // 8)
    count = 2 * per_piece + extra  # a partial last piece (not even a whole AES block when extra is odd)
    starts, words = [], []
    for start, piece in stream_pieces(key, count, ring):
        starts.append(start)
        words.append(piece.copy())  # the buffer is refilled for the next piece
    assert starts == list(range(0, count, per_piece))
    assert all(w.dtype == np.dtype(ring.dtype) for w in words)
    assert np.array_equal(np.concatenate(words), stream(key, count, ring))


def test_no_pieces_for_an_empty_stream():
    assert list(stream_pieces(bytes(32), 0, RingSpec(32, 16))) == []
