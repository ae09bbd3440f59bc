"""Aggregation is bit-identical on every CPU and in every update order.

Honest nodes recompute the aggregator's global model and compare digests, on whatever hardware
they own. Each SIMD level runs in its own process (torch and numpy pick their kernels at start).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fedledger.fl.aggregation as aggregation_module
import fedledger.fl.exact_sum as exact_sum_module
from fedledger.fl import AlignmentAggregation, ClientUpdate, ModelSpec, extract_submodel, initial_global_state
from fedledger.fl.exact_sum import FLOAT_EXACT_WEIGHT, ExactSum, range_exponent
from fedledger.fl.submodel import advanced_index
from fedledger.fl.update_format import global_digest

SPEC = ModelSpec("cnn", (1, 8, 8), 10, (32, 64))
PLAN = [(1.0, "static", 1201), (0.5, "static", 389), (0.5, "rolling", 977), (0.25, "rolling", 61), (0.125, "static", 7)]

_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
import fedledger.fl.exact_sum as exact_sum
from tests.fl.test_fl_determinism import case_digests, central_dp_digest, legacy_float32_digest
# "kernel": the compiled kernels for every fold, however small; otherwise numpy's loops for all
exact_sum.KERNEL_MIN_ENTRIES = 0 if sys.argv[1] == "kernel" else 2**62
modes = {"exact": case_digests, "kernel": case_digests, "dp": central_dp_digest, "legacy": legacy_float32_digest}
print(modes[sys.argv[1]]())
assert (sys.argv[1] == "kernel") == ("fedledger.fl.grid_kernels" in sys.modules), "kernels used or not as asked"
"""
# numba compiles for the CPU and features it is told: the kernel at the matching vector level
# (generic x86-64: SSE2, no SSE4.1 rounding; haswell: AVX2 and FMA, AVX-512 off; else this host)
NUMBA_CPUS = {
    "default": {"NUMBA_CPU_NAME": "generic"},
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "-avx512f"},
}


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


def _near_the_edge(updates: list[ClientUpdate], global_state: dict[str, torch.Tensor]) -> None:
    """Scale every update so its largest value sits just inside the exact sum's range (+-2**e)."""
    for u in updates:
        for name, t in u.state.items():
            edge = 2.0 ** range_exponent(global_state[name])
            u.state[name] = (t * (0.96 * edge / float(t.abs().max()))).contiguous()


def _wide_case(samples: list[int], tiny: bool = False) -> tuple[dict[str, torch.Tensor], list[ClientUpdate], ModelSpec]:
    """An MLP whose weight tensors span several CHUNK_ELEMENTS pieces, static and rolling maps,
    inputs from numpy's generator (portable: it does not dispatch on SIMD)."""
    spec = ModelSpec("mlp", (96,), 10, (701, 389))
    rng = np.random.default_rng(23)

    def noise(shape: torch.Size) -> torch.Tensor:
        return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))

    base = {n: noise(t.shape) * 0.1 for n, t in initial_global_state(spec, 7).items()}
    updates = []
    for i, n in enumerate(samples):
        rate, selection = PLAN[i % len(PLAN)][:2]
        state, index_map = extract_submodel(base, spec, rate, selection, 5 + i)
        trained = {k: t + noise(t.shape) * 0.05 for k, t in state.items()}
        if tiny:  # values far below the grid's step next to ordinary ones: truncation decides
            trained = {k: torch.where(t.abs() < 0.02, t * 1e-9, t).contiguous() for k, t in trained.items()}
        updates.append(ClientUpdate(f"site-{i}", trained, index_map, n))
    return base, updates, spec


def _digest(global_state: dict[str, torch.Tensor], updates: list[ClientUpdate], spec: ModelSpec) -> str:
    return global_digest(AlignmentAggregation().aggregate(global_state, updates), spec, 1).hex()


def case_digest(case: str, order: tuple[int, ...] | None = None) -> str:
    """The digest of one aggregation case (``order``: a permutation of its updates)."""
    if case == "realistic":
        return aggregate_digest(order)
    if case == "past_2_53":  # the round's weights pass FLOAT_EXACT_WEIGHT: the int64 fallback
        base, updates, spec = _wide_case([FLOAT_EXACT_WEIGHT - 3, FLOAT_EXACT_WEIGHT, 5, 2**22, 1])
        _near_the_edge(updates, base)
    elif case == "tiny_and_huge":  # weight 1 next to 2**31, values near the edge and far below the grid
        base, updates, spec = _wide_case([1, 2**31, 3, 1, 7], tiny=True)
        _near_the_edge(updates[1:2], base)
    elif case == "many":  # 40 updates of every width and selection
        base, updates, spec = _wide_case([(17 * i * i + 5) % 4093 + 1 for i in range(40)])
    else:
        raise ValueError(case)
    if order is not None:
        updates = [updates[i] for i in order]
    return _digest(base, updates, spec)


CASES = ("realistic", "past_2_53", "tiny_and_huge", "many")


def case_digests() -> str:
    return json.dumps({case: case_digest(case) for case in CASES})


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
    env.update(NUMBA_CPUS.get(level, {}))
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


def test_global_digest_is_the_same_on_every_simd_level(levels: list[str]) -> None:
    digests = {level: json.loads(_digest_in_process(level, "exact")) for level in levels}
    for case in CASES:
        per_level = {level: digests[level][case] for level in levels}
        assert len(set(per_level.values())) == 1, (case, per_level)
    assert digests["default"] == json.loads(case_digests())


def test_compiled_kernel_gives_the_same_digests_on_every_simd_level(
    levels: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # fedledger.fl.grid_kernels compiled for each level (NUMBA_CPUS): the same digests as numpy's loops
    digests = {level: json.loads(_digest_in_process(level, "kernel")) for level in levels}
    monkeypatch.setattr(exact_sum_module, "_kernels", lambda entries: None)
    reference = json.loads(case_digests())
    for level, found in digests.items():
        assert found == reference, level


def test_central_dp_model_is_the_same_on_every_simd_level(levels: list[str]) -> None:
    digests = {level: _digest_in_process(level, "dp") for level in levels}
    assert len(set(digests.values())) == 1, digests
    assert digests["default"] == central_dp_digest() != aggregate_digest()


def test_the_replaced_float32_accumulation_differs_between_simd_levels(levels: list[str]) -> None:
    # shows the cross-level test above can fail: the old path gives another model per kernel
    digests = {level: _digest_in_process(level, "legacy") for level in levels[:2]}
    assert len(set(digests.values())) == 2, digests


def test_global_digest_does_not_depend_on_update_order() -> None:
    reference = aggregate_digest()
    orders = list(itertools.permutations(range(len(PLAN))))
    for order in orders[1 :: len(orders) // 6]:
        assert aggregate_digest(order) == reference, order


@pytest.mark.parametrize("case", ["past_2_53", "tiny_and_huge"])
def test_edge_cases_do_not_depend_on_update_order(case: str) -> None:
    reference = case_digest(case)
    for order in ([4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 4, 0, 3, 2]):
        assert case_digest(case, tuple(order)) == reference, order


def test_folding_in_batches_gives_the_same_bits_as_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # updates wait by reference and are folded piece-major; a round too large for one batch is
    # folded into full-size sums early: grouping must not change a bit
    reference = {case: case_digest(case) for case in ("realistic", "past_2_53", "many")}
    monkeypatch.setattr(aggregation_module, "BATCH_BYTES", 1)  # fold after every update
    assert {case: case_digest(case) for case in reference} == reference


def test_the_past_2_53_case_really_passes_2_53() -> None:
    # the int64 fallback is exercised only if some entry's integer sum is beyond float64's exact range
    base, updates, _ = _wide_case([FLOAT_EXACT_WEIGHT - 3, FLOAT_EXACT_WEIGHT, 5, 2**22, 1])
    _near_the_edge(updates, base)
    name = "layers.0.weight"
    acc = ExactSum(tuple(base[name].shape), range_exponent(base[name]))
    for u in updates:
        acc.admit(u.num_samples)
        acc.scatter(u.state[name], u.num_samples, advanced_index(u.index_map.indices[name], acc.shape))
    assert int(acc.total.abs().max()) > 2**53
