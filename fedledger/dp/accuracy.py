"""The accuracy table of docs/secagg.md: plain alignment vs central DP at several epsilons (and,
optionally, secure aggregation), on the alignment experiment's data, partitions, widths and training.

Secure aggregation runs the real masked protocol in process (``fedledger.secagg.simulation``: keys,
shares, masked inputs, reveals, unmasking) every round; DP rounds use :class:`CentralDPAggregation`,
the round pipeline's own noise, with the noise multiplier calibrated so that all rounds together
spend exactly the target epsilon (full participation, delta 1e-5). Local DP-SGD rows train each
hospital by Opacus DP-SGD (``fedledger.fl.dp_sgd``, per-record clip C, no logit adjustment: it reads
class counts), z calibrated per hospital so its own 50 rounds spend the target record-level epsilon
(``fedledger.dp.local``), and align the updates plainly. Each run records test and
validation accuracy per round, so settings (the clip) are chosen on validation, never on test.
A secure run also records, per round, the largest deviation of its model from plain alignment of
the same updates (the quantisation the ring adds, which the table reports).

``python -m fedledger.dp.accuracy --rounds 50 --seeds 0,1,2 --out runs.json`` (one JSON file,
rewritten after every run, so a long sweep can be stopped and read at any time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedledger.dp.accountant import RoundPrivacy, epsilon, noise_multiplier_for
from fedledger.dp.central_aggregation import CentralDPAggregation
from fedledger.dp.local import LocalDPRound, calibrate_noise, local_epsilon
from fedledger.fileio import atomic_write_text
from fedledger.fl.aggregation import AlignmentAggregation, ClientUpdate
from fedledger.fl.data import Shard, load_dataset, partition, pooled
from fedledger.fl.dp_sgd import dp_sgd_plan
from fedledger.fl.experiment import VAL_FRACTION, _metrics, _round_updates, _spec_for, assign_rates, rates_for
from fedledger.fl.models import initial_global_state
from fedledger.fl.training import TrainConfig
from fedledger.secagg.layout import flat_positions, flatten_state, unflatten
from fedledger.secagg.messages import RoundSetup
from fedledger.secagg.ring import choose_ring
from fedledger.secagg.simulation import run_round

DELTA = 1e-5
VALUE_BOUND = 8.0  # public bound on every parameter a member sends (checked)
PLAIN, SECURE = "plain alignment", "secure aggregation"


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


@dataclass(frozen=True)
class Run:
    """One trajectory: a method (``plain alignment``, ``secure aggregation``, central DP at
    ``epsilon`` or local DP-SGD at ``local_epsilon`` per hospital) on one seed, among
    ``institutions`` hospitals (Dirichlet ``alpha``)."""

    seed: int
    rounds: int
    epsilon: float | None = None
    secure: bool = False
    institutions: int = 5
    alpha: float = 1.0
    clip: float = 1.0
    dataset: str = "digits"
    selection: str = "rolling"
    local_epsilon: float | None = None
    plain_loss: bool = False  # no logit adjustment (as DP-SGD must): the like-for-like plain row

    @property
    def method(self) -> str:
        if self.local_epsilon is not None:
            return f"local DP-SGD ε={self.local_epsilon:g} (record level, per hospital)"
        if self.plain_loss:
            return f"{PLAIN} without logit adjustment"
        return f"central DP ε={self.epsilon:g}" if self.epsilon is not None else SECURE if self.secure else PLAIN


def local_dp_noise(run: Run, shards: list[Shard], train: TrainConfig) -> dict[int, LocalDPRound]:
    """Each hospital's DP-SGD round, z calibrated so its ``run.rounds`` rounds spend ``run.local_epsilon``."""
    assert run.local_epsilon is not None
    out = {}
    for shard in shards:
        plan = dp_sgd_plan(len(shard.train), train.batch_size, train.epochs)
        z = calibrate_noise(run.local_epsilon, run.rounds, plan.sample_rate, plan.steps, DELTA)
        out[shard.institution] = LocalDPRound(z, run.clip, plan.sample_rate, plan.steps, DELTA)
    return out


def _round_seed(run: Run, round_index: int) -> bytes:
    return hashlib.sha3_256(repr((run, round_index)).encode()).digest()


def run_one(run: Run) -> dict[str, Any]:
    """Test and validation accuracy after each round of ``run`` (widths by data volume)."""
    from fedledger.fl.experiment import default_train

    data = load_dataset(run.dataset)
    shards = partition(
        data, run.institutions, "dirichlet", run.alpha, seed=run.seed, val_fraction=VAL_FRACTION, min_train=4
    )
    test = pooled([s.test for s in shards], f"{data.name}/test")
    val = pooled([s.val for s in shards if s.val is not None], f"{data.name}/val")
    spec = _spec_for(data)
    rates = assign_rates(shards, rates_for(run.institutions), "by_volume", run.seed)
    train = default_train(1)
    configure = None
    local: dict[int, LocalDPRound] = {}
    if run.local_epsilon is not None or run.plain_loss:
        train = replace(train, logit_adjustment=0.0)
    if run.local_epsilon is not None:
        local = local_dp_noise(run, shards, train)

        def configure(shard: Shard, config: TrainConfig) -> TrainConfig:
            own = local[shard.institution]
            return replace(config, dp_noise_multiplier=own.noise_multiplier, dp_max_grad_norm=own.clip,
                           dp_seed=config.seed)  # fmt: skip

    z = noise_multiplier_for(run.epsilon, run.rounds, DELTA) if run.epsilon else None
    state = initial_global_state(spec, run.seed)
    test_history, val_history, deviations = [], [], []
    for r in range(run.rounds):
        updates = _round_updates(
            state, spec, shards, rates, run.selection, r, replace(train), run.seed, configure=configure
        )
        if run.secure:
            members = list(updates)
            plain = flatten_state(AlignmentAggregation().aggregate(state, members))
            state = SecureAggregationSimulation().aggregate(state, members)
            deviations.append(float(np.abs(flatten_state(state).astype(np.float64) - plain).max()))
        elif z is not None:
            state = CentralDPAggregation(run.clip, z, _round_seed(run, r)).aggregate(state, updates)
        else:
            state = AlignmentAggregation().aggregate(state, updates)
        metrics = _metrics(spec, state, test, val)
        test_history.append(metrics["accuracy"])
        val_history.append(metrics["val_accuracy"])
    out: dict[str, Any] = {
        "run": run.__dict__,
        "method": run.method,
        "final_accuracy": test_history[-1],
        "final_val_accuracy": val_history[-1],
        "history": test_history,
        "val_history": val_history,
    }
    if run.secure:
        out["max_deviation_from_plain"] = deviations
    if local:
        out["noise_multiplier"] = statistics.fmean(p.noise_multiplier for p in local.values())
        out["spent_epsilon"] = max(local_epsilon([p] * run.rounds) for p in local.values())
    if z is not None:
        out["noise_multiplier"] = z
        out["spent_epsilon"] = epsilon([RoundPrivacy(run.clip, z, 1.0, run.institutions)] * run.rounds, DELTA)
    return out


def summary(results: Iterable[Mapping[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Mean and standard deviation of the final accuracy over seeds, per setting and method."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in results:
        run = r["run"]
        key = (run["institutions"], run["rounds"], run["clip"], r["method"])
        groups.setdefault(key, []).append(r)
    out = {}
    for key, rows in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0])):
        finals = [row["final_accuracy"] for row in rows]
        last5 = [statistics.fmean(row["history"][-5:]) for row in rows]
        out[key] = {
            "seeds": len(rows),
            "mean": statistics.fmean(finals),
            "std": statistics.stdev(finals) if len(finals) > 1 else 0.0,
            "last5_mean": statistics.fmean(last5),
            "last5_std": statistics.stdev(last5) if len(last5) > 1 else 0.0,
            "val_mean": statistics.fmean([row["final_val_accuracy"] for row in rows]),
            "noise_multiplier": rows[0].get("noise_multiplier"),
            "max_deviation": max((max(row.get("max_deviation_from_plain") or [0.0]) for row in rows), default=0.0),
        }
    return out


def markdown(results: Iterable[Mapping[str, Any]]) -> str:
    """One table row per setting and method: final test accuracy and the mean of the last 5 rounds,
    mean ± std over the seeds; validation accuracy (what settings are chosen on)."""
    lines = [
        "| institutions | rounds | clip C | method | final accuracy | last 5 rounds | validation | z | seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (n, rounds, clip, method), s in summary(results).items():
        z = f"{s['noise_multiplier']:.3g}" if s["noise_multiplier"] else "–"
        lines.append(
            f"| {n} | {rounds} | {clip:g} | {method} | {100 * s['mean']:.1f} ± {100 * s['std']:.1f} % "
            f"| {100 * s['last5_mean']:.1f} ± {100 * s['last5_std']:.1f} % | {100 * s['val_mean']:.1f} % "
            f"| {z} | {s['seeds']} |"
        )
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fedledger.dp.accuracy", description=__doc__)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epsilons", default="1,4,8", help="central DP rows (empty: none)")
    parser.add_argument("--local-epsilons", default="", help="local DP-SGD rows, record level per hospital")
    parser.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--secure", action="store_true", help="also the secure-aggregation row")
    parser.add_argument("--plain-loss", action="store_true", help="plain rows without logit adjustment")
    parser.add_argument("--institutions", type=int, default=5)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True, help="JSON file; runs already in it are kept")
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = json.loads(args.out.read_text()) if args.out.exists() else []
    if args.table:
        print(markdown(results))
        return
    done = {json.dumps(r["run"], sort_keys=True) for r in results}
    base = {"rounds": args.rounds, "institutions": args.institutions, "clip": args.clip}
    runs = [Run(int(s), **base, plain_loss=args.plain_loss) for s in _floats(args.seeds)] if args.plain else []
    runs += [Run(int(s), **base, secure=True) for s in _floats(args.seeds)] if args.secure else []
    runs += [Run(int(s), **base, epsilon=e) for e in _floats(args.epsilons) for s in _floats(args.seeds)]
    runs += [Run(int(s), **base, local_epsilon=e) for e in _floats(args.local_epsilons) for s in _floats(args.seeds)]
    for run in runs:
        if json.dumps(run.__dict__, sort_keys=True) in done:
            continue
        results.append(run_one(run))
        print(run.method, run.seed, f"final {results[-1]['final_accuracy']:.3f}", flush=True)
        atomic_write_text(args.out, json.dumps(results, indent=1))
    print(markdown(results))


if __name__ == "__main__":
    main()
