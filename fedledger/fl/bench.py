"""Aggregation speed: alignment of mixed-width updates vs a plain weighted sum, same run.

Model: MLP 1024 -> 2048 -> 2048 -> 2048 -> 10 with layer norms (~10.5M parameters). Ten updates
at rates (1, 1/2, 1/2, 1/4, 1/8) twice, half static and half rolling. Baseline: the plain weighted
torch sum of ten full-width copies of the same model (what FedAvg fundamentally costs). The three
are timed in turn within each repeat (medians), so load drifting on a shared machine hits all alike.
The process's first alignment is timed on its own: it loads the compiled exact-sum kernels (numba;
compiled on the machine's first run, then read from numba's cache).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from fedledger.fl.aggregation import AlignmentAggregation, ClientUpdate, full_width_update
from fedledger.fl.models import ModelSpec, initial_global_state
from fedledger.fl.submodel import extract_submodel

BENCH_SPEC = ModelSpec("mlp", (1024,), 10, (2048, 2048, 2048))
RATES = (1.0, 0.5, 0.5, 0.25, 0.125) * 2


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    return _interleaved_medians([fn], repeats)[0]


def _interleaved_medians(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function, the functions timed in turn within every repeat: on a
    shared machine the load drifts, and interleaving exposes every function to the same drift."""
    for fn in fns:
        fn()  # warm-up: first-touch page faults and allocator growth are not what we measure
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, spent in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def run_benchmark(repeats: int = 5) -> dict[str, Any]:
    global_state = initial_global_state(BENCH_SPEC, 0)
    params = sum(t.numel() for t in global_state.values())
    gen = torch.Generator().manual_seed(1)
    updates = []
    for i, rate in enumerate(RATES):
        sub, index_map = extract_submodel(global_state, BENCH_SPEC, rate, "static" if i < 5 else "rolling", 7 * i)
        state = {n: t + 0.01 * torch.randn(t.shape, generator=gen) for n, t in sub.items()}
        updates.append(ClientUpdate(f"inst{i}", state, index_map, 100 + i))
    full = [{n: t + 0.01 * torch.randn(t.shape, generator=gen) for n, t in global_state.items()} for _ in RATES]
    weights = [float(100 + i) for i in range(len(RATES))]
    total = sum(weights)

    def plain_weighted_sum() -> dict[str, torch.Tensor]:
        out = {}
        for name in global_state:
            acc = torch.zeros_like(global_state[name])
            for w, state in zip(weights, full, strict=True):
                acc.add_(state[name], alpha=w)
            out[name] = acc.div_(total)
        return out

    strategy = AlignmentAggregation()
    full_updates = [full_width_update(f"f{i}", s, int(w)) for i, (s, w) in enumerate(zip(full, weights, strict=True))]

    start = time.perf_counter()
    strategy.aggregate(global_state, updates)
    first_call = time.perf_counter() - start
    load_before = os.getloadavg()[0]
    baseline, aligned, aligned_full = _interleaved_medians(
        [
            plain_weighted_sum,
            lambda: strategy.aggregate(global_state, updates),
            lambda: strategy.aggregate(global_state, full_updates),
        ],
        repeats,
    )
    covered = sum(sum(u.state[n].numel() for n in u.state) for u in updates)
    return {
        "parameters": int(params),
        "updates": len(RATES),
        "rates": list(RATES),
        "update_parameters_total": int(covered),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "baseline_weighted_sum_s": baseline,
        "alignment_mixed_widths_s": aligned,
        "ratio": aligned / baseline,
        "goal_ratio_max": 1.5,
        "alignment_all_full_width_s": aligned_full,
        "alignment_first_call_s": first_call,
        "compiled_kernels": "fedledger.fl.grid_kernels" in sys.modules,
        "ratio_all_full_width": aligned_full / baseline,
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # 1-minute, before and after
    }
