"""The accuracy table of docs/secagg.md: plain alignment vs secure aggregation vs central DP at
several epsilons, on the alignment experiment's data, partitions, widths and local training.

Secure aggregation runs the real masked protocol in process (``fedledger.secagg.simulation``: keys,
shares, masked inputs, reveals, unmasking) every round; DP rounds use :class:`CentralDPAggregation`
with the noise multiplier calibrated so that all rounds together spend exactly the target epsilon
(full participation, delta 1e-5). One seed per row (compute on a shared 2-core machine).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from fedledger.dp.accountant import RoundPrivacy, epsilon
from fedledger.dp.central_aggregation import CentralDPAggregation
from fedledger.fl.aggregation import AlignmentAggregation, ClientUpdate
from fedledger.fl.data import load_dataset, partition, pooled
from fedledger.fl.experiment import VAL_FRACTION, _metrics, _round_updates, _spec_for, assign_rates, rates_for
from fedledger.fl.models import initial_global_state
from fedledger.secagg.layout import flat_positions, flatten_state, unflatten
from fedledger.secagg.messages import RoundSetup
from fedledger.secagg.ring import choose_ring
from fedledger.secagg.simulation import run_round

DELTA = 1e-5
VALUE_BOUND = 8.0  # public bound on every parameter a member sends (checked)


def noise_multiplier_for(target_epsilon: float, rounds: int, participants: int, clip: float) -> float:
    """The smallest z (to 1e-3) whose ``rounds`` full-participation Gaussian rounds spend ``target_epsilon``."""
    low, high = 0.05, 200.0
    while high - low > 1e-3:
        mid = (low + high) / 2
        spent = epsilon([RoundPrivacy(clip, mid, 1.0, participants)] * rounds, DELTA)
        low, high = (mid, high) if spent > target_epsilon else (low, mid)
    return high


class SecureAggregationSimulation:
    """Alignment through the real secure-aggregation protocol (every phase, in one process)."""

    def aggregate(
        self, global_state: Mapping[str, torch.Tensor], updates: Iterable[ClientUpdate]
    ) -> dict[str, torch.Tensor]:
        members = list(updates)
        shapes = {n: tuple(t.shape) for n, t in global_state.items()}
        weights = {i + 1: u.num_samples for i, u in enumerate(members)}
        values = {i + 1: flatten_state(u.state) for i, u in enumerate(members)}
        if max(float(np.abs(v).max()) for v in values.values()) > VALUE_BOUND:
            raise ValueError(f"a member's parameter exceeds the public bound {VALUE_BOUND}")
        ring = choose_ring(len(members), max(weights.values()), VALUE_BOUND)
        positions = {
            i + 1: flat_positions(u.index_map.global_shapes, u.index_map.indices) for i, u in enumerate(members)
        }
        length = sum(t.numel() for t in global_state.values())
        setup = RoundSetup(0, len(members) // 2 + 1, ring, length, weights, positions)
        _, aggregate, _ = run_round(setup, values, VALUE_BOUND)
        mean = aggregate.mean(flatten_state(global_state))
        return {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in unflatten(mean, shapes).items()}


def run(
    dataset: str = "digits",
    rounds: int = 50,
    seed: int = 0,
    clip: float = 1.0,
    epsilons: tuple[float, ...] = (1.0, 4.0, 8.0),
    selection: str = "rolling",
) -> dict[str, Any]:
    """Final and best test accuracy of each method after ``rounds`` rounds (5 institutions, α = 1)."""
    from fedledger.fl.experiment import default_train

    data = load_dataset(dataset)
    shards = partition(data, 5, "dirichlet", 1.0, seed=seed, val_fraction=VAL_FRACTION, min_train=4)
    test = pooled([s.test for s in shards], f"{data.name}/test")
    spec = _spec_for(data)
    rates = assign_rates(shards, rates_for(5), "by_volume", seed)
    train = default_train(1)
    methods: dict[str, Any] = {
        "plain alignment": AlignmentAggregation(),
        "secure aggregation": SecureAggregationSimulation(),
    }
    multipliers = {e: noise_multiplier_for(e, rounds, 5, clip) for e in epsilons}
    results: dict[str, Any] = {"rounds": rounds, "clip": clip, "delta": DELTA, "seed": seed, "methods": {}}
    for name, strategy in [*methods.items(), *((f"central DP ε={e:g}", e) for e in epsilons)]:
        state = initial_global_state(spec, seed)
        history = []
        for r in range(rounds):
            updates = _round_updates(state, spec, shards, rates, selection, r, replace(train), seed)
            if isinstance(strategy, float):
                aggregation: Any = CentralDPAggregation(clip, multipliers[strategy], secrets.token_bytes(32))
            else:
                aggregation = strategy
            state = aggregation.aggregate(state, updates)
            history.append(_metrics(spec, state, test, None)["accuracy"])
        entry: dict[str, Any] = {
            "final_accuracy": history[-1],
            "last5_mean_accuracy": float(np.mean(history[-5:])),
            "best_accuracy": max(history),
            "history": history,
        }
        if isinstance(strategy, float):
            entry["noise_multiplier"] = multipliers[strategy]
            entry["epsilon"] = epsilon([RoundPrivacy(clip, multipliers[strategy], 1.0, 5)] * rounds, DELTA)
        results["methods"][name] = entry
        print(name, json.dumps(entry), flush=True)
    return results


if __name__ == "__main__":
    import sys

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    print(json.dumps(run(rounds=rounds), indent=2))
