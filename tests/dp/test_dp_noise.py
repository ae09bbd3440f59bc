"""Clipping, distributed Skellam noise inside a real secure round, and central noise."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.dp.central import add_central_noise, central_noise, portable_log, standard_normals
from fedledger.dp.clipping import l2_clip
from fedledger.dp.distributed import (
    coverage_counts,
    noise_spread,
    noise_tail,
    realised_noise_multiplier,
    ring_sensitivity,
    sized_coverage,
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
THRESHOLD = 2  # of 3 members: one may drop out


def _noisy_round(drop: dict[int, str] | None = None, silent: frozenset[int] = frozenset()):
    """A real secure round (simulation) where every member but ``silent`` adds its Skellam share."""
    positions = {1: np.arange(LENGTH), 2: np.arange(LENGTH // 2), 3: np.arange(LENGTH // 4, LENGTH // 2)}
    weights = {1: 3, 2: 2, 3: 1}
    clip, z, frac = 1.0, 1.0, 4
    sensitivity = ring_sensitivity(clip, frac, max(weights.values()), LENGTH)
    counts = coverage_counts(positions.values(), LENGTH)
    sized = sized_coverage(positions, LENGTH, THRESHOLD)
    ring = choose_ring(3, 3, clip, frac, noise_tail(z, sensitivity, noise_spread(counts, sized)))
    setup = RoundSetup(0, THRESHOLD, ring, LENGTH, weights, positions)
    rng = np.random.default_rng(5)
    values = {m: l2_clip(rng.normal(size=p.size).astype(np.float32), clip) for m, p in positions.items()}
    noise = {m: skellam_share(p, sized, z, sensitivity) for m, p in positions.items() if m not in silent}
    _, aggregate, _ = run_round(setup, values, clip, noise=noise, drop_after=drop)
    exact = np.zeros(LENGTH, dtype=np.int64)
    for m in aggregate.survivors:
        q = np.rint(dequantise(values[m], ring, clip).astype(np.float64) * ring.scale).astype(np.int64)
        exact[positions[m]] += weights[m] * q
    realised = aggregate.ring_sum.view(ring.signed).astype(np.int64) - exact
    survivors = coverage_counts([positions[m] for m in aggregate.survivors], LENGTH)
    return realised, (z * sensitivity) ** 2, sized, survivors, z


def _variance_matches(noise: np.ndarray, expected: np.ndarray) -> bool:
    """Per group of entries with one expected variance: the sample variance within 5 % (at 15,000 entries
    or more a sample variance is within 5 % of the true one at more than 5 standard errors)."""
    return all(
        noise[expected == v].astype(np.float64).var() == pytest.approx(v, rel=0.05) for v in np.unique(expected)
    )


def test_shares_sized_for_the_threshold_sum_to_at_least_the_target_on_every_entry_in_secure_aggregation():
    noise, target, sized, survivors, z = _noisy_round()
    assert sorted(np.unique(sized).tolist()) == [1, 2]  # entries of 2 members: one may drop; of 3: two stay
    assert abs(noise.mean()) < 5 * np.sqrt(2 * target / LENGTH)
    expected = target * survivors / sized  # every member added target / sized on each of its entries
    assert expected.min() >= target and _variance_matches(noise, expected)
    assert realised_noise_multiplier(z, sized, survivors) == z  # the entries only member 1 covers


def test_a_member_that_skips_its_share_is_seen_in_the_variance():
    noise, target, sized, survivors, _ = _noisy_round(silent=frozenset({3}))
    assert not _variance_matches(noise, target * survivors / sized)  # member 3's entries: 1.5 -> 1 target


@pytest.mark.parametrize("dropped", [1, 2, 3])
def test_any_dropout_the_threshold_allows_leaves_every_released_entry_the_target(dropped: int):
    noise, target, sized, survivors, z = _noisy_round({dropped: "share"})
    released = survivors > 0
    assert realised_noise_multiplier(z, sized, survivors) >= z
    assert _variance_matches(noise[released], (target * survivors / sized)[released])
    assert np.all(noise[~released] == 0)


@pytest.mark.parametrize("variance", [2e6, 1.3e15, 4e16])  # up to a large consortium at 16 fractional bits
def test_a_share_has_its_variance_at_the_magnitudes_real_rounds_need(variance: float):
    entries = 400_000
    counts = np.ones(entries, dtype=np.int64)
    share = skellam_share(np.arange(entries), counts, 1.0, np.sqrt(variance), np.random.default_rng(11))
    # 6 standard errors of a sample variance (Skellam's excess kurtosis is ~1/variance: negligible)
    assert abs(share.astype(np.float64).var() / variance - 1) < 6 * np.sqrt(2 / entries)
    assert abs(share.astype(np.float64).mean()) < 6 * np.sqrt(variance / entries)
    with pytest.raises(DPParameterError, match="does not fit int64"):
        skellam_share(np.arange(2), counts, 1.0, 2.0**31)


def test_the_record_names_the_planned_multiplier_which_every_completed_round_carries():
    from fedledger.dp.accountant import epsilon
    from fedledger.dp.distributed import distributed_round_privacy, planned_sensitivity, skellam_upper_bound

    positions = {1: np.arange(100), 2: np.arange(50), 3: np.arange(50, 100)}
    weights = {1: 4, 2: 2, 3: 2}
    full = distributed_round_privacy(1.0, 2.0, 8, weights, positions, [1, 2, 3], 100, 2)
    dropped = distributed_round_privacy(1.0, 2.0, 8, weights, positions, [1, 3], 100, 2)
    assert full.noise_multiplier == dropped.noise_multiplier == 2.0 and full.mechanism == "skellam"
    assert (full.participants, dropped.participants) == (3, 2)
    assert full.ring_sensitivity == planned_sensitivity(1.0, 8, weights, positions) == 4 * (256 + np.sqrt(100) / 2)
    assert epsilon([dropped], 1e-5) == epsilon([full], 1e-5)
    # before the setup is known the aggregator checks a bound no real round exceeds
    assert epsilon([full], 1e-5) <= epsilon([skellam_upper_bound(1.0, 2.0, 8, 3)], 1e-5)
    with pytest.raises(DPParameterError, match="subset of the round's members"):
        distributed_round_privacy(1.0, 2.0, 8, weights, positions, [4], 100, 2)
    with pytest.raises(DPParameterError, match="only 1 survivors, the noise shares were sized for 2"):
        distributed_round_privacy(1.0, 2.0, 8, weights, positions, [1], 100, 2)


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
