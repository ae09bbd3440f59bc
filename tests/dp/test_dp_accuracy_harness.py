"""The accuracy-table harness: calibrated noise spends the target epsilon, and its secure-aggregation
strategy (the real masked protocol) gives plain alignment's model within quantisation."""

from __future__ import annotations

import numpy as np
import torch

from fedledger.dp.accountant import RoundPrivacy, epsilon, noise_multiplier_for
from fedledger.dp.accuracy import DELTA, SecureAggregationSimulation
from fedledger.fl import AlignmentAggregation, ClientUpdate, ModelSpec, initial_global_state, make_index_map
from fedledger.fl.submodel import extract_with_map
from fedledger.secagg.layout import flatten_state

SPEC = ModelSpec("mlp", (12,), 4, (16,))


def test_calibrated_multiplier_spends_the_target_epsilon() -> None:
    z = noise_multiplier_for(4.0, 20, DELTA)
    spent = epsilon([RoundPrivacy(1.0, z, 1.0, 5)] * 20, DELTA)
    assert 3.99 < spent <= 4.0
    assert epsilon([RoundPrivacy(1.0, z * 0.98, 1.0, 5)] * 20, DELTA) > 4.0


def test_secure_strategy_equals_plain_alignment_within_quantisation() -> None:
    g = initial_global_state(SPEC, 0)
    gen = torch.Generator().manual_seed(1)
    updates = []
    for i, (rate, n) in enumerate([(1.0, 30), (0.5, 20), (0.25, 9)]):
        index_map = make_index_map(SPEC, rate, "rolling", 3, salt=i)
        base = extract_with_map(g, index_map)
        state = {k: t + 0.1 * torch.randn(t.shape, generator=gen) for k, t in base.items()}
        updates.append(ClientUpdate(f"m{i}", state, index_map, n))
    secure = flatten_state(SecureAggregationSimulation().aggregate(g, updates))
    plain = flatten_state(AlignmentAggregation().aggregate(g, updates))
    assert not np.array_equal(secure, flatten_state(g))
    assert np.abs(secure - plain).max() <= 2.0**-15  # rounding to the ring's 2^-16 grid, averaged


def test_secure_run_records_its_deviation_from_plain_alignment_each_round() -> None:
    from fedledger.dp.accuracy import Run, run_one, summary

    result = run_one(Run(0, rounds=2, secure=True))
    deviations = result["max_deviation_from_plain"]
    assert len(deviations) == 2 and all(0 < d <= 2.0**-15 for d in deviations)  # the ring's 2^-16 grid
    assert next(iter(summary([result]).values()))["max_deviation"] == max(deviations)
    assert "max_deviation_from_plain" not in run_one(Run(0, rounds=1))
