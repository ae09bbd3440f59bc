"""Secure aggregation's cost against plain alignment of the same updates, measured in the same run.

For n in {5, 10, 20} members at width rates cycling (1, 1/2, 1/2, 1/4, 1/8) over one model:
the aggregator's unmasking and decoding time vs plain alignment's aggregation time (goal: <= 2x
at n = 10), one full-width member's masking time, and bytes per member: the masked upload vs
the sub-model's float32 size (goal: <= 1.1x), plus the key, share and reveal messages. The two
times are taken in turn within every repeat, so load drifting on a shared machine hits both.
Only this benchmark imports ``fedledger.fl`` (the baseline it measures against).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch

from fedledger.fl import AlignmentAggregation, ClientUpdate, ModelSpec, extract_submodel, initial_global_state
from fedledger.fl.bench import _interleaved_medians
from fedledger.secagg.aggregate import recompute_aggregate
from fedledger.secagg.layout import flat_positions, flatten_state
from fedledger.secagg.member import Member
from fedledger.secagg.messages import MaskedInput, Published, RoundSetup
from fedledger.secagg.ring import choose_ring, dequantise

BENCH_SPEC = ModelSpec("mlp", (1024,), 10, (1024, 1024, 1024))
RATES = (1.0, 0.5, 0.5, 0.25, 0.125)
VALUE_BOUND = 8.0
GOAL_TIME_RATIO = 2.0
GOAL_UPLOAD_RATIO = 1.1


def _one_size(n: int, spec: ModelSpec, global_state: dict[str, torch.Tensor], repeats: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(n)
    weights = {m: 100 + m for m in range(1, n + 1)}
    ring = choose_ring(n, max(weights.values()), VALUE_BOUND)
    updates, positions, values = [], {}, {}
    for m in range(1, n + 1):
        rate = RATES[(m - 1) % len(RATES)]
        sub, index_map = extract_submodel(global_state, spec, rate, "rolling", 3 * m)
        state = {k: torch.from_numpy(dequantise((t + 0.01 * torch.randn(t.shape, generator=gen)).numpy(), ring,
                                                VALUE_BOUND)) for k, t in sub.items()}
        updates.append(ClientUpdate(f"m{m}", state, index_map, weights[m]))
        positions[m] = flat_positions(index_map.global_shapes, index_map.indices)
        values[m] = flatten_state(state)
    length = sum(t.numel() for t in global_state.values())
    setup = RoundSetup(0, n // 2 + 1, ring, length, weights, positions)
    members = {m: Member(m, setup) for m in setup.members}
    keys = {m: member.advertise() for m, member in members.items()}
    shares = {m: member.share_keys(keys) for m, member in members.items()}
    for member in members.values():
        member.receive_shares(shares)
    masked: dict[int, MaskedInput] = {}
    mask_seconds = {}
    for m, member in members.items():
        start = time.perf_counter()
        masked[m] = member.masked_input(values[m], VALUE_BOUND)
        mask_seconds[m] = time.perf_counter() - start
    survivors = sorted(masked)
    reveals = {m: members[m].reveal(survivors) for m in survivors}
    published = Published(setup, keys, shares, masked, reveals)
    previous = flatten_state(global_state)

    def plain_round() -> object:
        return AlignmentAggregation().aggregate(global_state, updates)

    def secure_round() -> object:
        return recompute_aggregate(published).mean(previous)

    plain, secure = _interleaved_medians([plain_round, secure_round], repeats)
    upload = {m: len(masked[m].to_bytes()) / (4 * positions[m].size) for m in survivors}
    return {
        "members": n,
        "threshold": setup.threshold,
        "ring_bits": ring.bits,
        "plain_alignment_s": plain,
        "secure_aggregator_s": secure,
        "time_ratio": secure / plain,
        "member_masking_full_width_s": mask_seconds[1],
        "member_masking_median_s": statistics.median(mask_seconds.values()),
        "upload_ratio_max": max(upload.values()),
        "bytes_per_member": {
            "sub_model_float32_max": 4 * max(p.size for p in positions.values()),
            "masked_upload_max": max(len(m.to_bytes()) for m in masked.values()),
            "keys": len(keys[1].to_bytes()),
            "shares": max(len(s.to_bytes()) for s in shares.values()),
            "reveal": max(len(r.to_bytes()) for r in reveals.values()),
        },
    }


def run_benchmark(
    sizes: tuple[int, ...] = (5, 10, 20), repeats: int = 3, spec: ModelSpec = BENCH_SPEC
) -> dict[str, Any]:
    """The figures as a JSON-ready dict; ratios against plain alignment measured in this run."""
    global_state = initial_global_state(spec, 0)
    load_before = os.getloadavg()[0]
    results = {str(n): _one_size(n, spec, global_state, repeats) for n in sizes}
    at_ten = results.get("10")
    return {
        "load_average_1m": [load_before, os.getloadavg()[0]],  # before and after: the machine is shared
        "parameters": int(sum(t.numel() for t in global_state.values())),
        "rates": list(RATES),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "by_members": results,
        "goal_time_ratio_max_at_10": GOAL_TIME_RATIO,
        "goal_upload_ratio_max": GOAL_UPLOAD_RATIO,
        "time_goal_met_at_10": None if at_ten is None else bool(at_ten["time_ratio"] <= GOAL_TIME_RATIO),
        "upload_goal_met": bool(all(r["upload_ratio_max"] <= GOAL_UPLOAD_RATIO for r in results.values())),
    }
