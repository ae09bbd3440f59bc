"""Run as a script under one ``ATEN_CPU_CAPABILITY``: prints the digest of a fixed alignment.

Sub-models of widths 1 .. 1/8 with random weights and uneven sample counts, aligned into a wide
MLP; the digest is what a node compares with the aggregator's. Finding 4 of issue #10: honest
nodes on CPUs with other SIMD kernels must get the same bytes. Argument ``kernel`` or ``numpy``:
the exact sums on the compiled kernels (fedledger.fl.grid_kernels) or on numpy's loops alone.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

import fedledger.fl.exact_sum as exact_sum
from fedledger.fl import AlignmentAggregation, ClientUpdate, ModelSpec, extract_submodel, global_digest
from fedledger.fl.models import initial_global_state


def alignment_digest() -> str:
    spec = ModelSpec("mlp", (64,), 10, (509, 253))  # odd widths: no kernel gets whole vectors only
    # Inputs come from numpy's scalar generator: torch.randn itself differs between SIMD kernels, and
    # in the protocol every party reads the same base and update files, so only the aggregation may vary.
    rng = np.random.default_rng(11)

    def noise(shape: torch.Size) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))

    base = {n: noise(t.shape) * 0.1 for n, t in initial_global_state(spec, 7).items()}
    updates = []
    for i, (rate, samples) in enumerate([(1.0, 1_000_003), (0.5, 37), (0.5, 113), (0.25, 7919), (0.125, 3)]):
        state, index_map = extract_submodel(base, spec, rate, "static", 0)
        trained = {n: t + noise(t.shape) * 0.37 for n, t in state.items()}
        updates.append(ClientUpdate(f"inst-{i}", trained, index_map, samples))
    return global_digest(AlignmentAggregation().aggregate(base, updates), spec, 1).hex()


if __name__ == "__main__":
    torch.set_num_threads(1)
    kernel = sys.argv[1] == "kernel"
    exact_sum.KERNEL_MIN_ENTRIES = 0 if kernel else 2**62
    print(alignment_digest())
    assert kernel == ("fedledger.fl.grid_kernels" in sys.modules), "kernels used or not as asked"
