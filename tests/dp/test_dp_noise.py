"""Clipping, distributed Skellam noise inside a real secure round, and central noise."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.dp.central import add_central_noise, central_noise, portable_log, standard_normals
from fedledger.dp.clipping import l2_clip
from fedledger.dp.distributed import (
    coverage_counts,
    noise_tail,
    realised_noise_multiplier,
    ring_sensitivity,
    skellam_share,
)
from fedledger.dp.errors import DPParameterError
from fedledger.secagg.messages import RoundSetup
from fedledger.secagg.ring import choose_ring, dequantise
from fedledger.secagg.simulation import run_round


def test_clipping_bounds_the_norm_and_leaves_small_updates_alone():
    rng = np.random.default_rng(0)
    big = rng.normal(size=1000).astype(np.float32) * 10
    clipped = l2_clip(big, 1.0)
    assert np.linalg.norm(clipped.astype(np.float64)) <= 1.0
    assert np.allclose(clipped / np.linalg.norm(clipped), big / np.linalg.norm(big), atol=1e-6)
    small = big / 1000
    assert np.array_equal(l2_clip(small, 1.0), small)
    with pytest.raises(DPParameterError, match="NaN"):
        l2_clip(np.array([np.nan], dtype=np.float32), 1.0)


LENGTH = 60_000


def _noisy_round(drop: dict[int, str] | None = None):
    positions = {1: np.arange(LENGTH), 2: np.arange(LENGTH // 2), 3: np.arange(LENGTH // 4, LENGTH // 2)}
    weights = {1: 3, 2: 2, 3: 1}
    clip, z, frac = 1.0, 1.0, 4
    sensitivity = ring_sensitivity(clip, frac, max(weights.values()), LENGTH)
    ring = choose_ring(3, 3, clip, frac, noise_tail(z, sensitivity))
    setup = RoundSetup(0, 2, ring, LENGTH, weights, positions)
    rng = np.random.default_rng(5)
    values = {m: l2_clip(rng.normal(size=p.size).astype(np.float32), clip) for m, p in positions.items()}
    counts = coverage_counts(positions.values(), LENGTH)
    noise = {m: skellam_share(p, counts, z, sensitivity) for m, p in positions.items()}
    _, aggregate, _ = run_round(setup, values, clip, noise=noise, drop_after=drop)
    exact = np.zeros(LENGTH, dtype=np.int64)
    for m in aggregate.survivors:
        q = np.rint(dequantise(values[m], ring, clip).astype(np.float64) * ring.scale).astype(np.int64)
        exact[positions[m]] += weights[m] * q
    realised = aggregate.ring_sum.view(ring.signed).astype(np.int64) - exact
    survivors = coverage_counts([positions[m] for m in aggregate.survivors], LENGTH)
    return realised, (z * sensitivity) ** 2, counts, survivors, z


def test_member_noise_shares_sum_to_the_target_variance_on_every_entry_inside_secure_aggregation():
    noise, target, counts, _, _ = _noisy_round()
    assert abs(noise.mean()) < 5 * np.sqrt(target / LENGTH)
    for c in (1, 2, 3):  # entries covered by one, two and three members all get the full target
        var = noise[counts == c].astype(np.float64).var()
        assert var == pytest.approx(target, rel=0.05)


def test_dropouts_lower_the_realised_multiplier_and_say_by_how_much():
    noise, target, counts, survivors, z = _noisy_round({2: "share"})
    realised = realised_noise_multiplier(z, counts, survivors)
    assert realised == pytest.approx(z * np.sqrt(1 / 2))  # entries planned for 2, one survived
    released = survivors > 0
    worst = released & (survivors * 2 == counts)
    assert noise[worst].astype(np.float64).var() == pytest.approx(target / 2, rel=0.05)


def test_central_noise_is_reproducible_from_its_seed_and_scaled_per_entry():
    seed = bytes(range(32))
    assert np.array_equal(central_noise(seed, 10, 1.0), central_noise(seed, 10, 1.0))
    assert not np.array_equal(central_noise(seed, 10, 1.0), central_noise(bytes(32), 10, 1.0))
    mean = np.zeros(200_000, dtype=np.float32)
    coverage = np.where(np.arange(mean.size) % 2 == 0, 10, 0)
    noisy = add_central_noise(mean, coverage, clip=0.5, noise_multiplier=2.0, max_weight=5, seed=seed)
    assert np.array_equal(noisy[coverage == 0], mean[coverage == 0])
    assert noisy[coverage > 0].std() == pytest.approx(2.0 * 5 * 0.5 / 10, rel=0.02)
    with pytest.raises(DPParameterError, match="32 bytes"):
        central_noise(b"short", 10, 1.0)


def test_portable_log_agrees_with_libm_to_a_few_ulp_over_the_whole_range():
    x = np.concatenate([np.random.default_rng(3).random(200_000), [5e-324, 1e-300, 0.5, np.sqrt(0.5), 1.0]])
    reference = np.log(x)
    mine = portable_log(x)
    assert np.all(np.abs(mine - reference) <= 4 * np.spacing(np.abs(reference)) + (reference == 0))


def test_seeded_normals_are_standard_normal_and_independent_of_the_length_asked():
    from scipy import stats

    seed = bytes(range(32))
    z = standard_normals(seed, 400_001)
    assert z.size == 400_001
    assert stats.kstest(z, "norm").pvalue > 1e-3  # a wrong scale or a skew gives p ~ 0
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and z.std() == pytest.approx(1.0, abs=0.005)
    assert abs(float(np.corrcoef(z[:-1], z[1:])[0, 1])) < 0.01
    assert np.array_equal(standard_normals(seed, 1000), z[:1000])


def test_the_round_record_parameters_come_from_public_data_and_price_the_dropout():
    from fedledger.dp.accountant import epsilon
    from fedledger.dp.distributed import distributed_round_privacy, planned_sensitivity

    positions = {1: np.arange(100), 2: np.arange(50), 3: np.arange(50, 100)}
    weights = {1: 4, 2: 2, 3: 2}
    full = distributed_round_privacy(1.0, 2.0, 8, weights, positions, [1, 2, 3], 100)
    dropped = distributed_round_privacy(1.0, 2.0, 8, weights, positions, [1, 3], 100)
    assert full.noise_multiplier == 2.0 and full.participants == 3 and full.mechanism == "skellam"
    assert dropped.noise_multiplier == pytest.approx(2.0 * np.sqrt(1 / 2))
    assert full.ring_sensitivity == planned_sensitivity(1.0, 8, weights, positions) == 4 * (256 + np.sqrt(100) / 2)
    assert epsilon([dropped], 1e-5) > epsilon([full], 1e-5)
    with pytest.raises(DPParameterError, match="subset of the roster"):
        distributed_round_privacy(1.0, 2.0, 8, weights, positions, [4], 100)
