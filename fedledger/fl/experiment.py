"""The alignment experiment: does aligning mixed-width sub-models beat forcing everyone to the
smallest width, and come close to everyone training at full width?

Methods compared on the same partitions, initial models and training settings:
``centralised`` (pooled data, upper reference), ``fedavg_full`` (all institutions at width 1,
the unconstrained bound), ``fedavg_smallest`` (all at the smallest width: what the weakest
hospital forces without alignment), ``alignment_static``, ``alignment_rolling`` and
``alignment_tiled`` (each at its own width, aligned; tiled = rolling windows laid end to end
across institutions, advancing by ``tiled_step`` of the layer per round). Accuracy is
measured on the union of the institutions' local test splits.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedledger.fileio import atomic_write_text
from fedledger.fl.aggregation import AlignmentAggregation, ClientUpdate, FedAvg, full_width_update
from fedledger.fl.data import Dataset, Shard, load_dataset, partition, pooled
from fedledger.fl.evaluation import evaluate
from fedledger.fl.models import ModelSpec, default_spec, initial_global_state
from fedledger.fl.submodel import extract_submodel, tiled_offsets
from fedledger.fl.training import TrainConfig, train_local

METHODS = (
    "centralised",
    "fedavg_full",
    "fedavg_smallest",
    "alignment_static",
    "alignment_rolling",
    "alignment_tiled",
)
ALIGNMENT_METHODS = ("alignment_static", "alignment_rolling", "alignment_tiled")
METHOD_LABELS = {
    "centralised": "centralised",
    "fedavg_full": "FedAvg, all width 1",
    "fedavg_smallest": "FedAvg, all smallest width",
    "alignment_static": "alignment, static",
    "alignment_rolling": "alignment, rolling",
    "alignment_tiled": "alignment, tiled rolling",
}
DEFAULT_RATES = (1.0, 0.5, 0.5, 0.25, 0.125)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Setting:
    """One data set under one partition scheme."""

    dataset: str
    scheme: str
    alpha: float | None = None

    @property
    def label(self) -> str:
        return f"{self.dataset} / {self.scheme}" + (f" α={self.alpha:g}" if self.alpha is not None else "")


@dataclass(frozen=True)
class ExperimentConfig:
    settings: tuple[Setting, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    rates: tuple[float, ...] = DEFAULT_RATES
    rounds: int = 40
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, batch_size=32, lr=0.05))
    methods: tuple[str, ...] = METHODS
    lr_decay: float = 1.0  # learning rate multiplied by this every round (all methods alike)
    tiled_step: float = 0.5  # alignment_tiled: window advance per round, fraction of the layer

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": [s.label for s in self.settings],
            "seeds": list(self.seeds),
            "rates": list(self.rates),
            "rounds": self.rounds,
            "train": self.train.to_dict(),
            "methods": list(self.methods),
            "lr_decay": self.lr_decay,
            "tiled_step": self.tiled_step,
        }


def default_train(epochs: int = 1) -> TrainConfig:
    """Local training shared by every method: SGD, batch 32, logit-adjusted loss (tau = 1)."""
    return TrainConfig(epochs=epochs, batch_size=32, lr=0.05, logit_adjustment=1.0)


def full_config(rounds: int = 50, epochs: int = 1) -> ExperimentConfig:
    settings = tuple(
        Setting(ds, scheme, alpha)
        for ds in ("digits", "breast_cancer")
        for scheme, alpha in (("dirichlet", 0.1), ("dirichlet", 1.0), ("iid", None))
    )
    return ExperimentConfig(settings, rounds=rounds, train=default_train(epochs))


def quick_config() -> ExperimentConfig:
    return ExperimentConfig(
        (Setting("digits", "dirichlet", 1.0),),
        seeds=(0,),
        rounds=8,
        train=default_train(1),
    )


def _seed(*parts: object) -> int:
    """A training seed derived from (run seed, round, institution): distinct, reproducible."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _spec_for(data: Dataset) -> ModelSpec:
    return default_spec(data.input_shape, data.num_classes)


def _round_updates(
    global_state: dict[str, torch.Tensor],
    spec: ModelSpec,
    shards: list[Shard],
    rates: tuple[float, ...],
    selection: str,
    round_index: int,
    train: TrainConfig,
    seed: int,
    *,
    step: float | None = None,
    offsets: tuple[float, ...] | None = None,
) -> Iterator[ClientUpdate]:
    """A generator: each institution's update is trained, aggregated and dropped in turn."""
    homogeneous = all(r == 1.0 for r in rates)
    for position, (shard, rate) in enumerate(zip(shards, rates, strict=True)):
        sub, index_map = extract_submodel(
            global_state,
            spec,
            rate,
            selection,
            round_index,
            step=step,
            offset=offsets[position] if offsets else 0.0,
            salt=_seed(seed, "units", shard.institution),
        )
        config = replace(train, seed=_seed(seed, round_index, shard.institution))
        new_state, samples, _ = train_local(spec, sub, rate, shard.train, config)
        name = f"inst{shard.institution}"
        if homogeneous:
            yield full_width_update(name, new_state, samples)
        else:
            yield ClientUpdate(name, new_state, index_map, samples)


def run_federated(
    spec: ModelSpec,
    shards: list[Shard],
    rates: tuple[float, ...],
    selection: str,
    rounds: int,
    train: TrainConfig,
    seed: int,
    test: Dataset,
    lr_decay: float = 1.0,
    *,
    step: float | None = None,
    tiled: bool = False,
) -> list[dict[str, float]]:
    """Alignment (or FedAvg when every rate is 1) for ``rounds`` rounds; metrics after each round.

    ``step`` and ``tiled`` shape the selection: the rolling window's advance per round (fraction
    of the layer) and whether institutions' windows are laid end to end (:func:`tiled_offsets`).
    """
    global_state = initial_global_state(spec, seed)
    homogeneous = all(r == 1.0 for r in rates)
    strategy = FedAvg() if homogeneous else AlignmentAggregation()
    offsets = tuple(tiled_offsets(rates)) if tiled else None
    history = []
    for round_index in range(rounds):
        config = replace(train, lr=train.lr * lr_decay**round_index)
        updates = _round_updates(
            global_state, spec, shards, rates, selection, round_index, config, seed, step=step, offsets=offsets
        )
        global_state = strategy.aggregate(global_state, updates)
        history.append(evaluate(spec, global_state, test.X, test.y))
    return history


def run_centralised(
    spec: ModelSpec,
    train_data: Dataset,
    rounds: int,
    train: TrainConfig,
    seed: int,
    test: Dataset,
    lr_decay: float = 1.0,
) -> list[dict[str, float]]:
    """Pooled training, evaluated after every ``train.epochs`` epochs (one 'round')."""
    state = initial_global_state(spec, seed)
    history = []
    for round_index in range(rounds):
        config = replace(train, seed=_seed(seed, round_index, "central"), lr=train.lr * lr_decay**round_index)
        state, _, _ = train_local(spec, state, 1.0, train_data, config)
        history.append(evaluate(spec, state, test.X, test.y))
    return history


def run_method(
    method: str, data: Dataset, setting: Setting, config: ExperimentConfig, seed: int
) -> list[dict[str, float]]:
    shards = partition(data, len(config.rates), setting.scheme, setting.alpha or 1.0, seed=seed)
    test = pooled([s.test for s in shards], f"{data.name}/test")
    spec = _spec_for(data)
    n = len(config.rates)
    if method == "centralised":
        return run_centralised(
            spec,
            pooled([s.train for s in shards], "pooled"),
            config.rounds,
            config.train,
            seed,
            test,
            config.lr_decay,
        )
    if method == "fedavg_full":
        return run_federated(
            spec, shards, (1.0,) * n, "static", config.rounds, config.train, seed, test, config.lr_decay
        )
    if method == "fedavg_smallest":
        small = spec.narrowed(min(config.rates))
        return run_federated(
            small, shards, (1.0,) * n, "static", config.rounds, config.train, seed, test, config.lr_decay
        )
    if method in ("alignment_static", "alignment_rolling"):
        selection = method.removeprefix("alignment_")
        return run_federated(
            spec, shards, config.rates, selection, config.rounds, config.train, seed, test, config.lr_decay
        )
    if method == "alignment_tiled":
        return run_federated(
            spec,
            shards,
            config.rates,
            "rolling",
            config.rounds,
            config.train,
            seed,
            test,
            config.lr_decay,
            step=config.tiled_step,
            tiled=True,
        )
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def run_experiment(config: ExperimentConfig, progress: Progress | None = None) -> dict[str, Any]:
    """Every (setting, method, seed): per-round history; plus the summary (mean ± std of final round)."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    results: dict[str, Any] = {"config": config.to_dict(), "settings": []}
    cache: dict[str, Dataset] = {}
    for setting in config.settings:
        data = cache.setdefault(setting.dataset, load_dataset(setting.dataset))
        entry: dict[str, Any] = {"label": setting.label, "methods": {}}
        for method in config.methods:
            runs = []
            for seed in config.seeds:
                if progress:
                    progress(f"{setting.label}: {method}, seed {seed}")
                runs.append(run_method(method, data, setting, config, seed))
            entry["methods"][method] = {"histories": runs, "summary": _summarise(runs)}
        entry["claim"] = _claim(entry["methods"])
        results["settings"].append(entry)
    return results


def _summarise(runs: list[list[dict[str, float]]]) -> dict[str, float]:
    out = {}
    for metric in ("accuracy", "macro_f1"):
        finals = [100.0 * run[-1][metric] for run in runs]
        out[f"{metric}_mean"] = statistics.fmean(finals)
        out[f"{metric}_std"] = statistics.stdev(finals) if len(finals) > 1 else 0.0
    return out


def _claim(methods: dict[str, Any]) -> dict[str, Any]:
    """The claim, per alignment variant: beats smallest-width FedAvg, within 2 points of full width."""
    out: dict[str, Any] = {}
    if not {"fedavg_full", "fedavg_smallest"} <= set(methods):
        return out
    full = methods["fedavg_full"]["summary"]["accuracy_mean"]
    small = methods["fedavg_smallest"]["summary"]["accuracy_mean"]
    for variant in ALIGNMENT_METHODS:
        if variant not in methods:
            continue
        acc = methods[variant]["summary"]["accuracy_mean"]
        out[variant] = {
            "minus_smallest": acc - small,
            "minus_full": acc - full,
            "beats_smallest": acc > small,
            "within_2_of_full": acc >= full - 2.0,
        }
    return out


def markdown_table(results: dict[str, Any]) -> str:
    """Accuracy and macro-F1 (%, mean ± std over seeds, final round) per setting and method."""
    lines = [
        "| setting | method | accuracy (%) | macro-F1 (%) |",
        "|---|---|---:|---:|",
    ]
    for entry in results["settings"]:
        for method, data in entry["methods"].items():
            s = data["summary"]
            lines.append(
                f"| {entry['label']} | {METHOD_LABELS[method]} "
                f"| {s['accuracy_mean']:.1f} ± {s['accuracy_std']:.1f} "
                f"| {s['macro_f1_mean']:.1f} ± {s['macro_f1_std']:.1f} |"
            )
    lines += [
        "",
        "| setting | variant | vs smallest width (pts) | vs full width (pts) | claim holds |",
        "|---|---|---:|---:|---|",
    ]
    for entry in results["settings"]:
        for variant, c in entry["claim"].items():
            holds = (
                "yes"
                if c["beats_smallest"] and c["within_2_of_full"]
                else (
                    "no: "
                    + ", ".join(
                        part
                        for part, ok in (
                            ("does not beat smallest", c["beats_smallest"]),
                            ("more than 2 below full", c["within_2_of_full"]),
                        )
                        if not ok
                    )
                )
            )
            lines.append(
                f"| {entry['label']} | {METHOD_LABELS[variant]} | {c['minus_smallest']:+.1f} "
                f"| {c['minus_full']:+.1f} | {holds} |"
            )
    return "\n".join(lines) + "\n"


def summary_json(results: dict[str, Any]) -> dict[str, Any]:
    """The figures without per-round histories (what ``--quick`` prints)."""
    return {
        "config": results["config"],
        "settings": [
            {
                "label": e["label"],
                "methods": {m: d["summary"] for m, d in e["methods"].items()},
                "accuracy_per_round": {
                    m: [
                        round(100 * statistics.fmean(r[i]["accuracy"] for r in d["histories"]), 2)
                        for i in range(len(d["histories"][0]))
                    ]
                    for m, d in e["methods"].items()
                },
                "claim": e["claim"],
            }
            for e in results["settings"]
        ],
    }


def plot_accuracy(results: dict[str, Any], path: str | Path) -> None:
    """One panel per setting: mean accuracy per round of every method (shaded: ± std over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = results["settings"]
    cols = min(3, len(entries))
    rows = (len(entries) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, entry in zip(axes.flat, entries, strict=False):
        for method, data in entry["methods"].items():
            curves = np.array([[100 * point["accuracy"] for point in run] for run in data["histories"]])
            mean, std = curves.mean(axis=0), curves.std(axis=0)
            x = np.arange(1, len(mean) + 1)
            ax.plot(x, mean, label=METHOD_LABELS[method], linewidth=1.6)
            ax.fill_between(x, mean - std, mean + std, alpha=0.15)
        ax.set_title(entry["label"])
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        low = min(
            min(100 * p["accuracy"] for p in run[len(run) // 4 :])
            for d in entry["methods"].values()
            for run in d["histories"]
        )
        ax.set_ylim(max(0.0, low - 5), 100.5)
    for ax in list(axes.flat)[len(entries) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(results: dict[str, Any], out_dir: str | Path, stem: str = "fl-experiment") -> dict[str, Path]:
    """Markdown table, PNG and full JSON (with histories) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out / f"{stem}.md",
        "png": out / f"{stem}-accuracy.png",
        "json": out / f"{stem}.json",
    }
    atomic_write_text(paths["markdown"], markdown_table(results))
    plot_accuracy(results, paths["png"])
    atomic_write_text(paths["json"], json.dumps(results, indent=1, sort_keys=True))
    return paths
