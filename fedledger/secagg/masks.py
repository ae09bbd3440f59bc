"""Self masks and pairwise masks over global positions (shared by members and the aggregator).

A member's masked input is ``enc(x_i) + B_i + sum_j s_ij * P_ij`` over its own positions, where
``B_i`` is the self mask (seed b_i), ``P_ij`` the pairwise mask on the positions both i and j
cover and ``s_ij = +1`` if i < j else -1; so P_ij and P_ji cancel per entry in the sum.
"""

from __future__ import annotations

import numpy as np

from fedledger.secagg.layout import RowBlock, Runs, add_rows, row_blocks_within
from fedledger.secagg.prg import derive_key, mask_at, stream, stream_pieces
from fedledger.secagg.ring import RingSpec

Coverage = tuple[np.ndarray, Runs | None]  # a member's positions and their runs


def self_mask(seed: bytes, round_index: int, member: int, count: int, ring: RingSpec) -> np.ndarray:
    """B_i over the member's own ``count`` entries (only it and the unmasker use it: no global index)."""
    return stream(derive_key(seed, "self", round_index, member), count, ring)


def add_unmasked(
    total: np.ndarray,
    masked: np.ndarray,
    seed: bytes,
    round_index: int,
    member: int,
    positions: np.ndarray,
    blocks: list[RowBlock] | None,
    ring: RingSpec,
) -> None:
    """total[positions] += masked - B_i in the ring, one piece at a time (``blocks``: the positions'
    row blocks, or None to add entry by entry).

    Why: the unmasker needs only the difference at the member's global positions; taking it one
    cache-sized piece of B_i at a time never writes B_i or the difference to memory. Equal, word
    for word, to subtracting :func:`self_mask` and scattering.
    """
    key = derive_key(seed, "self", round_index, member)
    for start, words in stream_pieces(key, masked.size, ring):
        stop = start + words.size
        piece = np.subtract(masked[start:stop], words, out=words)
        if blocks is None:
            total[positions[start:stop]] += piece
        else:
            add_rows(total, row_blocks_within(blocks, start, stop), piece)


def shared_selection(own: np.ndarray, other: np.ndarray, global_length: int) -> np.ndarray:
    """Boolean selector over ``own``'s entries: the positions ``other`` covers too."""
    covered = np.zeros(global_length, dtype=bool)
    covered[other] = True
    return covered[own]


def pair_mask(secret: bytes, round_index: int, positions: np.ndarray, ring: RingSpec) -> np.ndarray:
    """P_ij at the given shared positions (same values whichever member computes them)."""
    return mask_at(derive_key(secret, "pair", round_index), positions, ring)


def add_signed(target: np.ndarray, where: np.ndarray, values: np.ndarray, sign: int) -> None:
    """target[where] += sign * values in the ring (modular wrap is the dtype's)."""
    if sign > 0:
        target[where] += values
    else:
        target[where] -= values


def shared_runs(own: Runs | None, other: Runs | None) -> list[tuple[int, int, int]] | None:
    """(global start, offset in own's vector, length) of what both cover; None unless both are
    sorted runs (then the caller selects entry by entry)."""
    if own is None or other is None or not (_sorted(own) and _sorted(other)):
        return None
    (a_g, a_s, a_n), (b_g, _, b_n) = own, other
    out, i, j = [], 0, 0
    while i < len(a_g) and j < len(b_g):
        a_end, b_end = a_g[i] + a_n[i], b_g[j] + b_n[j]
        low, high = max(a_g[i], b_g[j]), min(a_end, b_end)
        if low < high:
            out.append((low, a_s[i] + low - a_g[i], high - low))
        if a_end <= b_end:
            i += 1
        else:
            j += 1
    return out


def _sorted(blocks: Runs) -> bool:
    starts, _, lengths = blocks
    return all(starts[k] + lengths[k] <= starts[k + 1] for k in range(len(starts) - 1))


def apply_pair_mask(
    target: np.ndarray,
    secret: bytes,
    round_index: int,
    ring: RingSpec,
    sign: int,
    own: Coverage,
    other: Coverage,
    global_length: int,
    *,
    by_global: bool,
) -> None:
    """target += sign * P_ij on the entries own and other share.

    ``target`` is own's vector (a member masking) or, with ``by_global``, the global sum (the
    aggregator removing a dropped member's pair). Sorted runs go run by run over one AES-CTR span;
    anything else entry by entry: the values are the same either way.
    """
    key = derive_key(secret, "pair", round_index)
    runs = shared_runs(own[1], other[1])
    if runs is None:
        where = shared_selection(own[0], other[0], global_length)
        positions = own[0][where]
        add_signed(target, positions if by_global else where, mask_at(key, positions, ring), sign)
        return
    if not runs:
        return
    per_block = 16 // (ring.bits // 8)
    base = runs[0][0] // per_block * per_block
    words = stream(key, runs[-1][0] + runs[-1][2] - base, ring, base // per_block)
    for g, s, n in runs:
        start = g if by_global else s
        if sign > 0:
            target[start : start + n] += words[g - base : g - base + n]
        else:
            target[start : start + n] -= words[g - base : g - base + n]
