"""Aggregation is bit-identical on every CPU and in every update order.

Honest nodes recompute the aggregator's global model and compare digests, on whatever hardware
they own. Each SIMD level runs in its own process (torch and numpy pick their kernels at start).
"""

from __future__ import annotations

import itertools
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fedledger.fl import AlignmentAggregation, ClientUpdate, ModelSpec, extract_submodel, initial_global_state
from fedledger.fl.update_format import global_digest

SPEC = ModelSpec("cnn", (1, 8, 8), 10, (32, 64))
PLAN = [(1.0, "static", 1201), (0.5, "static", 389), (0.5, "rolling", 977), (0.25, "rolling", 61), (0.125, "static", 7)]

_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from tests.fl.test_fl_determinism import aggregate_digest, central_dp_digest, legacy_float32_digest
modes = {"exact": aggregate_digest, "dp": central_dp_digest, "legacy": legacy_float32_digest}
print(modes[sys.argv[1]]())
"""


def _portable_values(shape: tuple[int, ...], rng: random.Random, spread: float) -> torch.Tensor:
    """Values over many magnitudes from pure Python: the inputs must not depend on torch's kernels."""
    count = math.prod(shape)
    return torch.tensor([rng.gauss(0, 1) * math.exp(spread * rng.gauss(0, 1)) for _ in range(count)]).reshape(shape)


def portable_global_state() -> dict[str, torch.Tensor]:
    rng = random.Random(0)
    return {n: 0.1 * _portable_values(tuple(t.shape), rng, 1.0) for n, t in initial_global_state(SPEC, 0).items()}


def realistic_updates(global_state: dict[str, torch.Tensor]) -> list[ClientUpdate]:
    """Mixed widths and selections, sample counts far apart, values over many magnitudes."""
    rng = random.Random(5)
    updates = []
    for i, (rate, selection, samples) in enumerate(PLAN):
        sub, index_map = extract_submodel(global_state, SPEC, rate, selection, 3 + i)
        state = {n: (t + 0.01 * _portable_values(tuple(t.shape), rng, 2.0)).contiguous() for n, t in sub.items()}
        updates.append(ClientUpdate(f"hospital-{i}", state, index_map, samples))
    return updates


def aggregate_digest(order: tuple[int, ...] | None = None) -> str:
    global_state = portable_global_state()
    updates = realistic_updates(global_state)
    if order is not None:
        updates = [updates[i] for i in order]
    return global_digest(AlignmentAggregation().aggregate(global_state, updates), SPEC, 1).hex()


def central_dp_digest() -> str:
    """The round pipeline's central DP: clipped alignment plus the seeded Gaussian noise."""
    from fedledger.dp.central_aggregation import CentralDPAggregation

    global_state = portable_global_state()
    noised = CentralDPAggregation(0.05, 1.3, bytes(range(32))).aggregate(global_state, realistic_updates(global_state))
    return global_digest(noised, SPEC, 1).hex()


def legacy_float32_digest() -> str:
    """The replaced accumulation (float32 ``add_`` with ``alpha``), full-width updates only."""
    global_state = portable_global_state()
    rng = random.Random(9)
    out = {}
    for name, t in global_state.items():
        acc = torch.zeros_like(t)
        for _, _, samples in PLAN:
            acc.add_(t + 0.01 * _portable_values(tuple(t.shape), rng, 2.0), alpha=samples / 2635)
        out[name] = acc
    return global_digest(out, SPEC, 1).hex()


def _simd_levels() -> list[str]:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    levels = ["default"]
    if " avx2" in flags:
        levels.append("avx2")
    if " avx512f" in flags and " avx512bw" in flags:
        levels.append("avx512")
    return levels


def _digest_in_process(level: str, mode: str) -> str:
    env = dict(os.environ, ATEN_CPU_CAPABILITY=level)
    if level == "default":  # numpy too: no AVX dispatch at all
        env["NPY_DISABLE_CPU_FEATURES"] = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"
    root = Path(__file__).resolve().parents[2]
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, mode], env=env, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


@pytest.fixture(scope="module")
def levels() -> list[str]:
    found = _simd_levels()
    if len(found) < 2:
        pytest.skip("this CPU has one SIMD level only")
    return found


def test_global_digest_is_the_same_on_every_simd_level(levels):
    digests = {level: _digest_in_process(level, "exact") for level in levels}
    assert len(set(digests.values())) == 1, digests
    assert digests["default"] == aggregate_digest()


def test_central_dp_model_is_the_same_on_every_simd_level(levels):
    digests = {level: _digest_in_process(level, "dp") for level in levels}
    assert len(set(digests.values())) == 1, digests
    assert digests["default"] == central_dp_digest() != aggregate_digest()


def test_the_replaced_float32_accumulation_differs_between_simd_levels(levels):
    # shows the cross-level test above can fail: the old path gives another model per kernel
    digests = {level: _digest_in_process(level, "legacy") for level in levels[:2]}
    assert len(set(digests.values())) == 2, digests


def test_global_digest_does_not_depend_on_update_order():
    reference = aggregate_digest()
    orders = list(itertools.permutations(range(len(PLAN))))
    for order in orders[1 :: len(orders) // 6]:
        assert aggregate_digest(order) == reference, order
