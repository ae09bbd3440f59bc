"""The compiled exact-sum kernels (fedledger.fl.grid_kernels) give numpy's bits, entry for entry.

numpy's elementwise path stays in exact_sum as the reference; every aggregation here runs twice,
once on numpy alone and once with the kernels forced on (numpy's fold and narrowing then raise, so
the kernels demonstrably did all the work), and the resulting models must be the same bytes: edge
values (range limit, signed zeros, subnormals, exact and half grid steps), both integer types
(int64 beyond FLOAT_EXACT_WEIGHT), static, rolling and mixed maps, ragged pieces, early folds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

import fedledger.fl.aggregation as aggregation_module
import fedledger.fl.exact_sum as exact_sum
from fedledger.fl import AlignmentAggregation, ClientUpdate
from fedledger.fl.aggregation import AggregationError
from fedledger.fl.exact_sum import FLOAT_EXACT_WEIGHT, range_exponent
from fedledger.fl.grid_kernels import KernelBoundsError, plan_block
from fedledger.fl.submodel import DimIndex, IndexMap, gather
from tests.fl.test_fl_determinism import CASES, case_digest

SHAPES = {"conv": (23, 6, 3, 3), "dense": (301, 67), "bias": (2100,), "scalar": ()}
MAPS = ("full", "static", "rolling", "mixed")


def _numpy_must_not_run(*args: object, **kwargs: object) -> None:
    raise AssertionError("numpy's loop ran where the kernel should have")


@contextmanager
def _path(kernel: bool) -> Iterator[None]:
    """Aggregate on numpy alone, or with the kernels forced on for every fold and mean."""
    with pytest.MonkeyPatch.context() as patch:
        if kernel:
            patch.setattr(exact_sum, "KERNEL_MIN_ENTRIES", 0)
            patch.setattr(exact_sum, "_fold_block", _numpy_must_not_run)
            patch.setattr(exact_sum, "_narrow", _numpy_must_not_run)
        else:
            patch.setattr(exact_sum, "_kernels", lambda entries: None)
        yield


def _both_paths(run: Callable[[], dict[str, bytes]]) -> dict[str, bytes]:
    with _path(kernel=False):
        reference = run()
    with _path(kernel=True):
        fused = run()
    assert fused.keys() == reference.keys()
    for name in reference:
        assert fused[name] == reference[name], name
    return reference


def _dims(kind: str, shape: tuple[int, ...], seed: int) -> tuple[DimIndex, ...]:
    """Per dimension: kept whole, a prefix (static), a window wrapping around (rolling), or both mixed."""
    out: list[DimIndex] = []
    for d, n in enumerate(shape):
        keep = max(1, (n * (3 + d)) // 7) if d < 2 else n
        start = (seed * 37 + 11 * d) % n
        rolling = (torch.arange(keep) + start) % n
        static = torch.arange(keep)
        chosen = {"full": None, "static": static, "rolling": rolling, "mixed": static if d == 0 else rolling}[kind]
        out.append(None if keep == n else chosen)
    return tuple(out)


def _edge_values(rng: np.random.Generator, shape: tuple[int, ...], dtype: type, exponent: int) -> np.ndarray:
    """Random values over many magnitudes inside +-2**exponent, with the edges sprinkled in."""
    bound = dtype(2.0**exponent)
    step = 2.0 ** (exponent - 30)  # one grid step at weight 1
    tiny = np.finfo(dtype).smallest_subnormal
    specials = np.array(
        [0.0, -0.0, tiny, -tiny, tiny * 977, -tiny * 977, np.finfo(dtype).tiny, -np.finfo(dtype).tiny,
         np.nextafter(bound, dtype(0)), -np.nextafter(bound, dtype(0)), 3 * step, -3 * step, 2.5 * step,
         -2.5 * step, 0.5 * step, -0.5 * step, np.nextafter(dtype(step), dtype(0))],
        dtype=dtype,
    )  # fmt: skip
    values = rng.standard_normal(shape) * np.exp(3 * rng.standard_normal(shape))
    values = np.asarray(np.clip(values, -0.9 * float(bound), 0.9 * float(bound)), dtype=dtype)
    flat = values.reshape(-1)
    where = rng.choice(flat.size, size=min(flat.size, 4 * specials.size), replace=False)
    flat[where] = np.resize(specials, where.size)
    return values


def _aggregate(dtype: type, weights: list[int], maps: list[str], seed: int) -> dict[str, bytes]:
    """The aligned model's bytes per tensor; global row 0 (and the scalar) is a tiny negative value
    in every update, so that a written-first -0.0 meets added -0.0s."""
    rng = np.random.default_rng(seed)
    previous = {n: torch.from_numpy(np.asarray(rng.standard_normal(s), dtype=dtype)) for n, s in SHAPES.items()}
    previous["dense"][:, 5] = -0.0  # uncovered entries keep the previous value, sign included
    exponents = {n: range_exponent(t) for n, t in previous.items()}
    updates = []
    for u, (weight, kind) in enumerate(zip(weights, maps, strict=True)):
        dims = {n: _dims(kind, s, seed + u) for n, s in SHAPES.items()}
        state = {}
        for name, shape in SHAPES.items():
            full = _edge_values(rng, shape, dtype, exponents[name])
            full.reshape(shape[0] if shape else 1, -1)[0] = -1e-30
            state[name] = gather(torch.from_numpy(full), dims[name]).contiguous()
        updates.append(ClientUpdate(f"site-{u}", state, IndexMap(0.5, SHAPES, dims), weight))
    out = AlignmentAggregation().aggregate(previous, updates)
    return {n: t.numpy().tobytes() for n, t in out.items()}


WEIGHT_CASES = {
    "ordinary": ([1201, 389, 977, 61, 7], ["full", "static", "rolling", "mixed", "rolling"]),
    "uncovered": ([3, 113, 7919], ["static", "rolling", "mixed"]),
    "past_2_53": ([FLOAT_EXACT_WEIGHT - 3, FLOAT_EXACT_WEIGHT, 5, 2**22, 1], ["full", *MAPS[1:], "static"]),
    "extremes": ([1, 2**31, 3, 1], ["rolling", "full", "static", "mixed"]),
}


@pytest.mark.parametrize("early_fold", [False, True], ids=["piece-major", "early-fold"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(WEIGHT_CASES))
def test_kernel_gives_numpys_bits_on_edge_values(
    case: str, dtype: type, early_fold: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exact_sum, "CHUNK_ELEMENTS", 999)  # many pieces, the last of each tensor ragged
    if early_fold:  # fold after every update into full-size sums (fresh=False, the int64 switch mid-round)
        monkeypatch.setattr(aggregation_module, "BATCH_BYTES", 1)
    weights, maps = WEIGHT_CASES[case]
    model = _both_paths(lambda: _aggregate(dtype, weights, maps, seed=len(case)))
    if maps[0] == "full" and not early_fold and sum(weights) <= FLOAT_EXACT_WEIGHT:
        # float64 sums written first by a full update: -0.0 + -0.0 stays -0.0 (int64 has no -0)
        dense = np.frombuffer(model["dense"], dtype=dtype)
        assert np.any((dense == 0) & np.signbit(dense)), "no -0.0 in the model: the signed-zero edge was not reached"
    assert len(set(model.values())) == len(model)


def test_kernel_gives_numpys_bits_on_the_determinism_cases() -> None:
    # the digests the SIMD-level tests compare: realistic CNN, int64 fallback, 2**31 weights, 40 updates
    _both_paths(lambda: {case: case_digest(case).encode() for case in CASES})


@pytest.mark.parametrize("kernel", [False, True], ids=["numpy", "kernel"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1.0], ids=["nan", "inf", "edge"])
def test_range_errors_are_raised_at_add_and_change_nothing(kernel: bool, bad: float) -> None:
    rng = np.random.default_rng(3)
    previous = {"dense": torch.from_numpy(rng.standard_normal((301, 67)).astype(np.float32))}
    edge = 2.0 ** range_exponent(previous["dense"])
    good = ClientUpdate(
        "good", {"dense": previous["dense"] * 0.5}, IndexMap(1.0, {"dense": (301, 67)}, {"dense": (None, None)}), 5
    )
    spoiled = previous["dense"].clone()
    spoiled[300, 66] = bad * edge
    update = ClientUpdate("bad", {"dense": spoiled}, good.index_map, 7)
    with _path(kernel):
        acc = aggregation_module.StreamingAccumulator(previous)
        acc.add(good)
        with pytest.raises(
            AggregationError, match=r"institution bad, tensor dense: value .* outside the aggregation range"
        ):
            acc.add(update)
        assert acc.count == 1
        result = acc.result()["dense"]
    with _path(kernel=False):
        alone = AlignmentAggregation().aggregate(previous, [good])["dense"]
    assert result.numpy().tobytes() == alone.numpy().tobytes()


def test_kernel_refuses_a_block_outside_its_arrays_before_writing() -> None:
    values = np.ones((10, 8), dtype=np.float32)
    sums = np.zeros((4, 8))
    plan = plan_block(values, (slice(0, 8),), (10, 8), (slice(0, 8),))
    assert plan is not None
    plan.fold(values, 6, 2.0, sums, 0, 4, write=False)  # rows 6..9 into 0..3: fits
    assert sums.sum() == 64.0
    for values_row, sums_row, rows in ((7, 0, 4), (0, 1, 4), (-1, 0, 2), (0, -1, 1)):
        with pytest.raises(KernelBoundsError, match="outside the arrays"):
            plan.fold(values, values_row, 2.0, sums, sums_row, rows, write=True)
    assert sums.sum() == 64.0  # nothing written
    for source, target in (((slice(4, 9),), (slice(0, 5),)), ((slice(0, 4),), (slice(0, 5),))):
        with pytest.raises(KernelBoundsError, match="does not fit"):
            plan_block(values, source, (10, 8), target)


def test_plan_leaves_what_the_kernel_does_not_cover_to_numpy() -> None:
    # float16 values and a non-contiguous view go through numpy's loops (same bits, slower)
    half = np.ones((4, 4), dtype=np.float16)
    assert plan_block(half, (slice(0, 4),), (4, 4), (slice(0, 4),)) is None
    strided = np.ones((4, 8), dtype=np.float32)[:, ::2]
    assert plan_block(strided, (slice(0, 4),), (4, 4), (slice(0, 4),)) is None
