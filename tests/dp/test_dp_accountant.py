"""The RDP accountant against closed forms and published figures; the budget check refuses overspending."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedledger.dp.accountant import (
    ORDERS,
    PrivacyAccount,
    PrivacyBudget,
    RoundPrivacy,
    epsilon,
    round_rdp,
    subsampled_rdp_upper,
)
from fedledger.dp.errors import BudgetExceeded, DPParameterError


def _gaussian(z: float, q: float = 1.0) -> RoundPrivacy:
    return RoundPrivacy(clip=1.0, noise_multiplier=z, sample_rate=q, participants=10)


def test_full_participation_gaussian_rdp_is_the_closed_form():
    # Mironov 2017, Prop. 7: the Gaussian mechanism of sensitivity 1 and std z is (alpha, alpha/(2 z^2))-RDP
    rdp = round_rdp(_gaussian(2.0))
    assert np.allclose(rdp, np.array(ORDERS) / (2 * 2.0**2), rtol=1e-12)


def test_abadi_et_al_example_is_at_least_as_tight_as_the_moments_accountant():
    # Abadi et al. 2016, Sec. 3.1: q = 0.01, sigma = 4, delta = 1e-5, 10000 steps -> epsilon ~ 1.26
    eps = epsilon([_gaussian(4.0, 0.01)] * 10_000, 1e-5)
    assert 0.9 < eps <= 1.26


def test_general_subsampling_bound_upper_bounds_the_tight_gaussian_one_and_stays_close():
    z, q = 1.1, 0.01
    tight = round_rdp(_gaussian(z, q))
    for i, alpha in enumerate(ORDERS):
        if float(alpha).is_integer() and alpha <= 128:
            assert subsampled_rdp_upper(q, int(alpha), lambda a: a / (2 * z**2)) >= tight[i] * (1 - 1e-9)
    # at a ring scale where Skellam is Gaussian, the general bound costs under 20% of epsilon
    skellam = RoundPrivacy(1.0, z, q, 10, "skellam", ring_sensitivity=1e8, dimension=10_000)
    assert 1.0 < epsilon([skellam] * 100, 1e-5) / epsilon([_gaussian(z, q)] * 100, 1e-5) < 1.2


def test_skellam_tends_to_the_gaussian_as_the_ring_scale_grows_and_is_never_below_it():
    gaussian = epsilon([_gaussian(1.0)] * 50, 1e-5)
    coarse = RoundPrivacy(1.0, 1.0, 1.0, 10, "skellam", ring_sensitivity=50.0, dimension=10_000)
    fine = RoundPrivacy(1.0, 1.0, 1.0, 10, "skellam", ring_sensitivity=1e7, dimension=10_000)
    eps_coarse, eps_fine = epsilon([coarse] * 50, 1e-5), epsilon([fine] * 50, 1e-5)
    assert eps_coarse > eps_fine >= gaussian
    assert eps_fine == pytest.approx(gaussian, rel=1e-6)


def test_epsilon_grows_with_rounds_and_falls_with_noise():
    assert epsilon([], 1e-5) == 0.0
    one, ten = epsilon([_gaussian(1.0)], 1e-5), epsilon([_gaussian(1.0)] * 10, 1e-5)
    assert 0 < one < ten
    assert epsilon([_gaussian(3.0)] * 10, 1e-5) < ten


def test_budget_refuses_the_round_that_would_overspend_and_changes_nothing():
    account = PrivacyAccount(PrivacyBudget(epsilon=8.0, delta=1e-5))
    spent = [account.record(_gaussian(3.0)) for _ in range(3)]
    assert spent == sorted(spent) and spent[-1] <= 8.0
    with pytest.raises(BudgetExceeded, match="over the budget 8"):
        account.record(_gaussian(0.3))
    assert len(account.rounds) == 3 and account.spent() == pytest.approx(spent[-1])
    assert len(account.per_round()) == 3


def test_audit_recomputes_epsilon_from_the_recorded_parameters_alone():
    rounds = [_gaussian(1.2, 0.5), RoundPrivacy(1.0, 1.0, 1.0, 8, "skellam", ring_sensitivity=6.6e6, dimension=4096)]
    ledger = json.dumps([r.to_dict() for r in rounds])  # what the round records carry
    again = [RoundPrivacy.from_dict(d) for d in json.loads(ledger)]
    assert again == rounds
    assert epsilon(again, 1e-6) == epsilon(rounds, 1e-6)


@pytest.mark.parametrize(
    "record",
    [
        {"clip": 1.0, "noise_multiplier": 1.0, "sample_rate": 1.0},  # participants missing
        {"clip": 1.0, "noise_multiplier": -1.0, "sample_rate": 1.0, "participants": 3},
        {"clip": 1.0, "noise_multiplier": 1.0, "sample_rate": 1.5, "participants": 3},
        {"clip": "x", "noise_multiplier": 1.0, "sample_rate": 1.0, "participants": 3},
        {"clip": 1.0, "noise_multiplier": 1.0, "sample_rate": 1.0, "participants": 3, "mechanism": "laplace"},
        {"clip": 1.0, "noise_multiplier": 1.0, "sample_rate": 1.0, "participants": 3, "mechanism": "skellam"},
    ],
)
def test_malformed_records_are_refused_with_a_reason(record):
    with pytest.raises(DPParameterError):
        RoundPrivacy.from_dict(record)


def test_budget_and_delta_are_checked():
    with pytest.raises(DPParameterError):
        PrivacyBudget(0.0, 1e-5)
    with pytest.raises(DPParameterError):
        epsilon([_gaussian(1.0)], 0.0)


def test_a_secure_run_is_planned_on_a_skellam_bound_that_its_real_rounds_never_exceed() -> None:
    from dataclasses import replace

    import numpy as np

    from aggregator.privacy_gate import planned_privacy
    from fedledger.dp.distributed import distributed_round_privacy
    from fedledger.protocol.secagg_rule import SecAggRule

    planned = planned_privacy(8.0, 1e-5, 1.0, 2, 5, SecAggRule(3))
    assert planned is not None and planned.mechanism == "skellam"
    assert epsilon([planned] * 2, 1e-5) <= 8.0  # the run's two rounds fit the target ...
    smaller = replace(planned, noise_multiplier=planned.noise_multiplier - 2e-3)
    assert epsilon([smaller] * 2, 1e-5) > 8.0  # ... and z is the smallest that does
    positions = {m: np.arange(100 // m) for m in range(1, 6)}
    real = distributed_round_privacy(1.0, planned.noise_multiplier, 16, dict.fromkeys(positions, 3), positions,
                                     [1, 2, 3], 100, 3)  # fmt: skip
    assert epsilon([real], 1e-5) <= epsilon([planned], 1e-5)
    central = planned_privacy(8.0, 1e-5, 1.0, 2, 5)
    assert central is not None and central.mechanism == "gaussian"
