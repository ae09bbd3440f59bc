"""Shared round fixtures for the secure-aggregation tests: real width-scalable models and index maps.

Members carry quantised sub-model states (what the ring can carry exactly), so the decoded secure
aggregate can be compared bit for bit with plain alignment of the very same tensors.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch

from fedledger.fl import (
    AlignmentAggregation,
    ClientUpdate,
    IndexMap,
    ModelSpec,
    extract_with_map,
    initial_global_state,
    make_index_map,
)
from fedledger.secagg.layout import flat_positions, flatten_state, unflatten
from fedledger.secagg.messages import RoundSetup
from fedledger.secagg.ring import choose_ring, dequantise

SPEC = ModelSpec("mlp", (12,), 4, (16, 16))
BOUND = 4.0
# widths {1, 1/2, 1/4}, static, rolling and random selections: overlaps of every shape
MEMBERS = {
    1: (1.0, "static", 40),
    2: (0.5, "static", 25),
    3: (0.25, "rolling", 13),
    4: (0.5, "rolling", 31),
    5: (0.25, "random", 7),
}


@dataclass
class Case:
    global_state: dict[str, torch.Tensor]
    maps: dict[int, IndexMap]
    states: dict[int, dict[str, torch.Tensor]]
    setup: RoundSetup
    values: dict[int, np.ndarray]

    @property
    def previous(self) -> np.ndarray:
        return flatten_state(self.global_state)

    def plain_alignment(self, members: list[int]) -> np.ndarray:
        """Plain (non-secure) alignment of the same quantised states, flattened."""
        updates = [
            ClientUpdate(f"m{m}", self.states[m], self.maps[m], self.setup.weights[m]) for m in sorted(members)
        ]
        return flatten_state(exact_alignment().aggregate(self.global_state, updates))

    def as_state(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        return unflatten(flat, {n: tuple(t.shape) for n, t in self.global_state.items()})


def exact_alignment() -> AlignmentAggregation:
    """Alignment with exact sums: float64 accumulation today, the integer accumulator once merged."""
    if "accumulate_dtype" in inspect.signature(AlignmentAggregation).parameters:
        return AlignmentAggregation(accumulate_dtype=torch.float64)  # type: ignore[call-arg]
    return AlignmentAggregation()


def build_case(threshold: int = 3, round_index: int = 2, seed: int = 0, members: dict | None = None) -> Case:
    members = members or MEMBERS
    global_state = initial_global_state(SPEC, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    weights = {m: w for m, (_, _, w) in members.items()}
    ring = choose_ring(len(members), max(weights.values()), BOUND)
    maps, states, positions, values = {}, {}, {}, {}
    for m, (rate, selection, _) in members.items():
        index_map = make_index_map(SPEC, rate, selection, round_index, salt=m)
        base = extract_with_map(global_state, index_map)
        trained = {n: t + 0.3 * torch.randn(t.shape, generator=gen) for n, t in base.items()}
        quantised = {n: torch.from_numpy(dequantise(t.numpy(), ring, BOUND)) for n, t in trained.items()}
        maps[m], states[m] = index_map, quantised
        positions[m] = flat_positions(index_map.global_shapes, index_map.indices)
        values[m] = flatten_state(quantised)
    length = sum(t.numel() for t in global_state.values())
    setup = RoundSetup(round_index, threshold, ring, length, weights, positions)
    return Case(global_state, maps, states, setup, values)
