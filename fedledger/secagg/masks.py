"""Self masks and pairwise masks over global positions (shared by members and the aggregator).

A member's masked input is ``enc(x_i) + B_i + sum_j s_ij * P_ij`` over its own positions, where
``B_i`` is the self mask (seed b_i), ``P_ij`` the pairwise mask on the positions both i and j
cover and ``s_ij = +1`` if i < j else -1; so P_ij and P_ji cancel per entry in the sum.
"""

from __future__ import annotations

import numpy as np

from fedledger.secagg.prg import derive_key, mask_at, stream
from fedledger.secagg.ring import RingSpec


def self_mask(seed: bytes, round_index: int, member: int, count: int, ring: RingSpec) -> np.ndarray:
    """B_i over the member's own ``count`` entries (only it and the unmasker use it: no global index)."""
    return stream(derive_key(seed, "self", round_index, member), count, ring)


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
