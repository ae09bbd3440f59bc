"""Central DP at the aggregator (consortia without secure aggregation): alignment of clipped
updates, then Gaussian noise on every covered entry, reproducible bit for bit by every co-signer.

Each update's change from the global model (over its own sub-model's entries) is clipped to L2
norm C; entry p of the weighted sum then moves by at most w_max * C when one member changes, so
the aggregate gets N(0, (z * w_max * C)**2) per entry, divided by the entry's public weight
(:func:`fedledger.dp.central.add_central_noise`). The noise comes from the round's 256-bit seed
(``fedledger.protocol.noise_seed``), over the float tensors in name order. The seed may be given as
a function, called once the updates are in: the round pipeline binds it to the included entries.

The secure-aggregation mode calls :func:`clip_update` on each member's side and leaves the noise
to the members' shares (``fedledger.protocol.secagg_noise``) instead of :func:`noise_aligned_state`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import torch

from fedledger.dp.central import add_central_noise
from fedledger.dp.clipping import l2_clip
from fedledger.fl.aggregation import AlignmentAggregation, ClientUpdate, StreamingAccumulator
from fedledger.fl.submodel import gather


def clip_update(update: ClientUpdate, global_state: Mapping[str, torch.Tensor], clip: float) -> ClientUpdate:
    """``update`` with its change from the global model scaled to L2 norm <= ``clip`` (float tensors)."""
    names = sorted(n for n in update.index_map.indices if update.state[n].is_floating_point())
    bases = {n: gather(global_state[n], update.index_map.indices[n]).to(torch.float32) for n in names}
    delta = np.concatenate(
        [(update.state[n].to(torch.float32) - bases[n]).numpy().ravel() for n in names] or [np.zeros(0, np.float32)]
    )
    clipped = l2_clip(delta, clip)
    state = dict(update.state)
    offset = 0
    for n in names:
        size = bases[n].numel()
        piece = torch.from_numpy(clipped[offset : offset + size].reshape(tuple(bases[n].shape)))
        state[n] = (bases[n] + piece).to(update.state[n].dtype)
        offset += size
    return ClientUpdate(update.institution, state, update.index_map, update.num_samples, update.base_digest)


def noise_aligned_state(
    state: dict[str, torch.Tensor],
    entry_weights: Mapping[str, torch.Tensor],
    clip: float,
    noise_multiplier: float,
    max_weight: int,
    seed: bytes,
) -> dict[str, torch.Tensor]:
    """The aligned mean ``state`` with Gaussian noise on each covered entry (``entry_weights``: the
    public weight per entry, 0 where no update covers it)."""
    names = sorted(n for n, t in state.items() if t.is_floating_point())
    coverage = [
        np.broadcast_to(entry_weights[n].numpy(), tuple(state[n].shape)).astype(np.float64).ravel() for n in names
    ]
    mean = np.concatenate([state[n].to(torch.float32).numpy().ravel() for n in names])
    noised = add_central_noise(mean, np.concatenate(coverage), clip, noise_multiplier, max_weight, seed)
    out = dict(state)
    offset = 0
    for n in names:
        size = state[n].numel()
        piece = noised[offset : offset + size].reshape(tuple(state[n].shape)).copy()
        out[n] = torch.from_numpy(piece).to(state[n].dtype)
        offset += size
    return out


class CentralDPAggregation(AlignmentAggregation):
    """Alignment of clipped updates plus seeded Gaussian noise (see the module docstring)."""

    def __init__(self, clip: float, noise_multiplier: float, seed: bytes | Callable[[], bytes]) -> None:
        super().__init__()
        self.clip = clip
        self.noise_multiplier = noise_multiplier
        self.seed = seed
        self.max_weight = 0

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Iterable[ClientUpdate]
    ) -> dict[str, torch.Tensor]:
        acc = StreamingAccumulator(global_state)
        for update in updates:
            acc.add(clip_update(self._accept(update), global_state, self.clip))
            self.max_weight = max(self.max_weight, update.num_samples)
        if acc.count == 0:
            return {n: t.clone() for n, t in global_state.items()}
        weights = {n: acc.entry_weights(n) for n, t in global_state.items() if t.is_floating_point()}
        state = acc.result()
        seed = self.seed() if callable(self.seed) else self.seed
        return noise_aligned_state(state, weights, self.clip, self.noise_multiplier, self.max_weight, seed)
