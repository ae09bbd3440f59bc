"""The alignment experiment: does aligning mixed-width sub-models beat forcing everyone to the
smallest width, and come close to everyone training at full width?

Methods compared on the same partitions, initial models and training settings:
``centralised`` (pooled data, upper reference), ``fedavg_full`` (all institutions at width 1,
the unconstrained bound), ``fedavg_smallest`` (all at the smallest width: what the weakest
hospital forces without alignment), ``alignment_static``, ``alignment_rolling`` and
``alignment_tiled`` (each at its own width, aligned; tiled = rolling windows laid end to end
across institutions, advancing by ``tiled_step`` of the layer per round).

Which institution gets which width is an explicit parameter (``assignment``): ``by_volume``
(the largest data share gets the widest model, the realistic case), ``random`` (per seed) or
``against_volume``. Every institution keeps a validation split; settings are chosen on the
validation accuracy (``val_accuracy``), and accuracy is reported on the union of the
institutions' local test splits, which nothing is tuned on.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedledger.fileio import atomic_write_text
from fedledger.fl.aggregation import ClientUpdate, FedAvg, full_width_update
from fedledger.fl.data import Dataset, Shard, load_dataset, partition, pooled
from fedledger.fl.evaluation import evaluate
from fedledger.fl.exact_sum import out_of_range, range_exponent
from fedledger.fl.models import ModelSpec, default_spec, initial_global_state
from fedledger.fl.rules import DEFAULT_RULE, DEFAULT_SERVER_MOMENTUM, aggregation_for
from fedledger.fl.submodel import extract_submodel, extract_with_map, tiled_offsets
from fedledger.fl.training import TrainConfig, train_local

SELECTIONS = ("static", "rolling", "tiled")
VARIANTS = {"": "", "_fjord": " + FjORD", "_momentum": " + server momentum", "_fjord_momentum": " + FjORD + momentum"}
ALIGNMENT_METHODS = tuple(f"alignment_{s}{v}" for v in VARIANTS for s in SELECTIONS)
METHODS = ("centralised", "fedavg_full", "fedavg_smallest", "fedavg_full_momentum", *ALIGNMENT_METHODS)
_SELECTION_LABELS = {"static": "static", "rolling": "rolling", "tiled": "tiled rolling"}
METHOD_LABELS = {
    "centralised": "centralised",
    "fedavg_full": "FedAvg, all width 1",
    "fedavg_smallest": "FedAvg, all smallest width",
    "fedavg_full_momentum": "FedAvg, all width 1 + server momentum",
    **{
        f"alignment_{s}{v}": f"alignment, {_SELECTION_LABELS[s]}{label}"
        for v, label in VARIANTS.items()
        for s in SELECTIONS
    },
}
# the recommended method, chosen on validation accuracy (docs/fl.md, "Methods tried"): rolling
# windows (FedRolex) with server momentum 0.5 (FedAvgM on the aligned model)
DEFAULT_METHOD = "alignment_rolling_momentum"
DEFAULT_RATES = (1.0, 0.5, 0.5, 0.25, 0.125)
HETEROFL_TIERS = (1.0, 0.5, 0.25, 0.125, 0.0625)  # HeteroFL's computation levels a..e
ASSIGNMENTS = ("by_volume", "random", "against_volume")
MODELS = ("default", "deep_cnn")
VAL_FRACTION = 0.15

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Setting:
    """One data set under one partition scheme, among ``institutions`` hospitals, one model."""

    dataset: str
    scheme: str
    alpha: float | None = None
    institutions: int = 5
    model: str = "default"

    @property
    def label(self) -> str:
        name = self.dataset if self.model == "default" else f"{self.dataset} ({self.model})"
        skew = f" α={self.alpha:g}" if self.alpha is not None else ""
        return f"{name} / {self.scheme}{skew} / {self.institutions} inst"


def rates_for(institutions: int) -> tuple[float, ...]:
    """Widths of a federation: the project's five, or HeteroFL's tiers dealt evenly."""
    if institutions == len(DEFAULT_RATES):
        return DEFAULT_RATES
    return tuple(HETEROFL_TIERS[i * len(HETEROFL_TIERS) // institutions] for i in range(institutions))


def assign_rates(shards: list[Shard], rates: tuple[float, ...], assignment: str, seed: int) -> tuple[float, ...]:
    """Width per shard (in shard order): ``by_volume``, ``random`` (per seed) or ``against_volume``."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"assignment must be one of {ASSIGNMENTS}, got {assignment!r}")
    widest_first = sorted(rates, reverse=True)
    if assignment == "random":
        order = list(np.random.default_rng(_seed(seed, "assignment")).permutation(len(shards)))
    else:
        order = sorted(range(len(shards)), key=lambda i: (-len(shards[i].train), i))
        if assignment == "against_volume":
            order.reverse()
    out = [0.0] * len(shards)
    for rank, shard_index in enumerate(order):
        out[shard_index] = widest_first[rank]
    return tuple(out)


@dataclass(frozen=True)
class ExperimentConfig:
    settings: tuple[Setting, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    rates: tuple[float, ...] | None = None  # None: rates_for(setting.institutions)
    rounds: int = 40
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=2, batch_size=32, lr=0.05))
    methods: tuple[str, ...] = METHODS
    lr_decay: float = 1.0  # learning rate multiplied by this every round (all methods alike)
    tiled_step: float = 0.5  # alignment_tiled: window advance per round, fraction of the layer
    assignments: tuple[str, ...] = ("by_volume",)
    aggregation_rule: str = DEFAULT_RULE
    poison_scale: float | None = None  # one member (the widest) sends base + scale * (trained - base)
    server_momentum: float = DEFAULT_SERVER_MOMENTUM  # beta of the *_momentum methods

    def rates_of(self, setting: Setting) -> tuple[float, ...]:
        return self.rates if self.rates is not None else rates_for(setting.institutions)

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": [s.label for s in self.settings],
            "seeds": list(self.seeds),
            "rates": list(self.rates) if self.rates is not None else "per institutions count",
            "assignments": list(self.assignments),
            "aggregation_rule": self.aggregation_rule,
            "poison_scale": self.poison_scale,
            "val_fraction": VAL_FRACTION,
            "rounds": self.rounds,
            "train": self.train.to_dict(),
            "methods": list(self.methods),
            "lr_decay": self.lr_decay,
            "tiled_step": self.tiled_step,
            "server_momentum": self.server_momentum,
        }


def default_train(epochs: int = 1) -> TrainConfig:
    """Local training shared by every method: SGD, batch 32, logit-adjusted loss (tau = 1)."""
    return TrainConfig(epochs=epochs, batch_size=32, lr=0.05, logit_adjustment=1.0)


def full_config(rounds: int = 50, epochs: int = 1) -> ExperimentConfig:
    """Issue #15's grid: label skew alpha 0.1 and 1 and the pathological 2-classes split, IID for
    reference; 5 and 20 institutions; every width assignment."""
    settings = tuple(
        Setting(ds, scheme, alpha, n, model)
        for ds, model in (("digits", "default"), ("breast_cancer", "default"), ("digits", "deep_cnn"))
        for scheme, alpha in (("dirichlet", 0.1), ("dirichlet", 1.0), ("classes", None), ("iid", None))
        for n in (5, 20)
        if not (ds == "breast_cancer" and scheme == "classes")  # two classes: the split would be IID
    )
    methods = (
        "centralised",
        "fedavg_full",
        "fedavg_smallest",
        "alignment_static",
        "alignment_rolling",
        "alignment_static_fjord_momentum",
        DEFAULT_METHOD,
    )
    return ExperimentConfig(
        settings, rounds=rounds, train=default_train(epochs), assignments=ASSIGNMENTS, methods=methods
    )


def quick_config() -> ExperimentConfig:
    """The realistic case (widths follow data volume), small enough for under a minute."""
    return ExperimentConfig(
        (Setting("digits", "dirichlet", 1.0),),
        seeds=(0,),
        rounds=8,
        train=default_train(1),
        methods=("fedavg_full", "fedavg_smallest", "alignment_static", DEFAULT_METHOD),
    )


def _seed(*parts: object) -> int:
    """A training seed derived from (run seed, round, institution): distinct, reproducible."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _spec_for(data: Dataset, model: str = "default") -> ModelSpec:
    """The data set's default model, or a deeper CNN (four conv blocks) where width matters more."""
    if model == "deep_cnn":
        return ModelSpec("cnn", data.input_shape, data.num_classes, (32, 64, 64, 128))
    if model != "default":
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
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
    poison_scale: float | None = None,
    nested: bool = False,
    configure: Callable[[Shard, TrainConfig], TrainConfig] | None = None,
) -> Iterator[ClientUpdate]:
    """A generator: each institution's update is trained, aggregated and dropped in turn.

    With ``poison_scale``, the widest institution (the first, on ties) turns attacker and sends
    base + poison_scale * (trained - base): scaled, and sign-flipped when negative. With ``nested``
    each institution also trains every narrower width of the federation (FjORD). ``configure``
    adapts the round's config to one institution (e.g. its own DP-SGD noise)."""
    attacker = rates.index(max(rates)) if poison_scale is not None else -1
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
        config = replace(train, seed=_seed(seed, round_index, shard.institution), nested_rates=rates if nested else ())
        if configure is not None:
            config = configure(shard, config)
        new_state, samples, _ = train_local(spec, sub, rate, shard.train, config)
        if position == attacker and poison_scale is not None:
            base = extract_with_map(global_state, index_map)
            new_state = {n: (base[n] + poison_scale * (t - base[n])).contiguous() for n, t in new_state.items()}
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
    val: Dataset | None = None,
    aggregation_rule: str = DEFAULT_RULE,
    poison_scale: float | None = None,
    nested: bool = False,
    server_momentum: float | None = None,
) -> list[dict[str, float]]:
    """Alignment (or FedAvg when every rate is 1) for ``rounds`` rounds; metrics after each round.

    ``step`` and ``tiled`` shape the selection: the rolling window's advance per round (fraction
    of the layer) and whether institutions' windows are laid end to end (:func:`tiled_offsets`).
    ``nested``: FjORD's ordered dropout; ``server_momentum``: beta of FedAvgM on the aligned model.
    """
    global_state = initial_global_state(spec, seed)
    homogeneous = all(r == 1.0 for r in rates)
    strategy = FedAvg() if homogeneous and aggregation_rule == DEFAULT_RULE else aggregation_for(aggregation_rule)
    offsets = tuple(tiled_offsets(rates)) if tiled else None
    history = []
    before_previous: dict[str, torch.Tensor] | None = None
    for round_index in range(rounds):
        if server_momentum is not None:
            strategy = aggregation_for(
                aggregation_rule, server_momentum=server_momentum, before_previous=before_previous
            )
            before_previous = global_state
        config = replace(train, lr=train.lr * lr_decay**round_index)
        updates = _round_updates(
            global_state,
            spec,
            shards,
            rates,
            selection,
            round_index,
            config,
            seed,
            step=step,
            offsets=offsets,
            poison_scale=poison_scale,
            nested=nested,
        )
        global_state = strategy.aggregate(global_state, _within_range(global_state, updates))
        history.append(_metrics(spec, global_state, test, val))
    return history


def _within_range(global_state: dict[str, torch.Tensor], updates: Iterator[ClientUpdate]) -> Iterator[ClientUpdate]:
    """Drop updates the validator would reject for values outside the exact sum's range (as the
    aggregator does, with a reason): a poisoned model can grow until even honest updates are."""
    exponents = {name: range_exponent(t) for name, t in global_state.items()}
    for update in updates:
        if all(out_of_range(update.state[n], exponents[n]) is None for n in update.state):
            yield update


def _metrics(spec: ModelSpec, state: dict[str, torch.Tensor], test: Dataset, val: Dataset | None) -> dict[str, float]:
    """Test metrics (reported) and, when there is a validation set, its accuracy (for choosing)."""
    out = evaluate(spec, state, test.X, test.y)
    if val is not None:
        out["val_accuracy"] = evaluate(spec, state, val.X, val.y)["accuracy"]
    return out


def run_centralised(
    spec: ModelSpec,
    train_data: Dataset,
    rounds: int,
    train: TrainConfig,
    seed: int,
    test: Dataset,
    lr_decay: float = 1.0,
    val: Dataset | None = None,
) -> list[dict[str, float]]:
    """Pooled training, evaluated after every ``train.epochs`` epochs (one 'round')."""
    state = initial_global_state(spec, seed)
    history = []
    for round_index in range(rounds):
        config = replace(train, seed=_seed(seed, round_index, "central"), lr=train.lr * lr_decay**round_index)
        state, _, _ = train_local(spec, state, 1.0, train_data, config)
        history.append(_metrics(spec, state, test, val))
    return history


def run_method(
    method: str, data: Dataset, setting: Setting, config: ExperimentConfig, seed: int, assignment: str = "by_volume"
) -> list[dict[str, float]]:
    n = setting.institutions
    shards = partition(data, n, setting.scheme, setting.alpha or 1.0, seed=seed, val_fraction=VAL_FRACTION, min_train=4)
    test = pooled([s.test for s in shards], f"{data.name}/test")
    val = pooled([s.val for s in shards if s.val is not None], f"{data.name}/val")
    spec = _spec_for(data, setting.model)
    rates = assign_rates(shards, config.rates_of(setting), assignment, seed)
    common: dict[str, Any] = {"val": val, "aggregation_rule": config.aggregation_rule}
    if method == "centralised":
        train_data = pooled([s.train for s in shards], "pooled")
        return run_centralised(spec, train_data, config.rounds, config.train, seed, test, config.lr_decay, val)
    if method.startswith("fedavg_"):
        narrow = spec.narrowed(min(rates)) if method == "fedavg_smallest" else spec
        momentum = config.server_momentum if method.endswith("_momentum") else None
        return run_federated(
            narrow,
            shards,
            (1.0,) * n,
            "static",
            config.rounds,
            config.train,
            seed,
            test,
            config.lr_decay,
            server_momentum=momentum,
            **common,
        )
    if method not in ALIGNMENT_METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    selection = method.removeprefix("alignment_").split("_")[0]
    tiled = selection == "tiled"
    return run_federated(
        spec,
        shards,
        rates,
        "rolling" if tiled else selection,
        config.rounds,
        config.train,
        seed,
        test,
        config.lr_decay,
        step=config.tiled_step if tiled else None,
        tiled=tiled,
        poison_scale=config.poison_scale,
        nested="_fjord" in method,
        server_momentum=config.server_momentum if method.endswith("_momentum") else None,
        **common,
    )


def _run_key(config: ExperimentConfig, setting: Setting, method: str, seed: int, assignment: str) -> str:
    """Names one run by everything that decides its result (the grid's other cells excluded)."""
    fixed = {k: v for k, v in config.to_dict().items() if k not in ("settings", "seeds", "methods", "assignments")}
    fixed["train"] = {k: v for k, v in fixed["train"].items() if k != "nested_rates"}  # the method decides it
    if "momentum" not in method:
        del fixed["server_momentum"]
    if method not in ALIGNMENT_METHODS:
        assignment = "any"  # the baselines do not depend on who gets which width
    cell = {"config": fixed, "setting": setting.label, "method": method, "seed": seed, "assignment": assignment}
    return hashlib.sha256(json.dumps(cell, sort_keys=True).encode()).hexdigest()[:24]


def _cached_run(cache_dir: Path | None, key: str, run: Callable[[], list[dict[str, float]]]) -> list[dict[str, float]]:
    """A run's history from ``cache_dir`` if an earlier (maybe interrupted) experiment finished it."""
    if cache_dir is None:
        return run()
    path = cache_dir / f"{key}.json"
    if path.exists():
        history: list[dict[str, float]] = json.loads(path.read_text())
        return history
    history = run()
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(history))
    return history


def run_experiment(
    config: ExperimentConfig, progress: Progress | None = None, cache_dir: str | Path | None = None
) -> dict[str, Any]:
    """Every (setting, assignment, method, seed): per-round history; plus the summary (mean ± std
    of the final round). Methods that do not depend on the assignment run once per setting.

    With ``cache_dir`` each run's history is kept in its own file as soon as it ends, so a long
    experiment killed halfway resumes where it stopped, and several processes can share the work."""
    cache = Path(cache_dir) if cache_dir is not None else None
    torch.use_deterministic_algorithms(True, warn_only=True)
    results: dict[str, Any] = {"config": config.to_dict(), "settings": []}
    loaded: dict[str, Dataset] = {}
    same_for_all: dict[tuple[Setting, str], list[list[dict[str, float]]]] = {}
    for setting in config.settings:
        data = loaded.setdefault(setting.dataset, load_dataset(setting.dataset))
        for assignment in config.assignments:
            label = f"{setting.label} / widths {assignment.replace('_', ' ')}"
            entry: dict[str, Any] = {"label": label, "assignment": assignment, "methods": {}}
            for method in config.methods:
                key = (setting, method)
                if method not in ALIGNMENT_METHODS and key in same_for_all:
                    runs = same_for_all[key]
                else:
                    runs = []
                    for seed in config.seeds:
                        if progress:
                            progress(f"{label}: {method}, seed {seed}")
                        run = partial(run_method, method, data, setting, config, seed, assignment)
                        runs.append(_cached_run(cache, _run_key(config, setting, method, seed, assignment), run))
                    if method not in ALIGNMENT_METHODS:
                        same_for_all[key] = runs
                entry["methods"][method] = {"histories": runs, "summary": _summarise(runs)}
            entry["claim"] = _claim(entry["methods"])
            results["settings"].append(entry)
    return results


def _summarise(runs: list[list[dict[str, float]]]) -> dict[str, float]:
    out = {}
    for metric in ("accuracy", "macro_f1", "val_accuracy"):
        if metric not in runs[0][-1]:
            continue
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
        "| setting | method | test accuracy (%) | test macro-F1 (%) | validation accuracy (%) |",
        "|---|---|---:|---:|---:|",
    ]
    for entry in results["settings"]:
        for method, data in entry["methods"].items():
            s = data["summary"]
            val = f"{s['val_accuracy_mean']:.1f} ± {s['val_accuracy_std']:.1f}" if "val_accuracy_mean" in s else "-"
            lines.append(
                f"| {entry['label']} | {METHOD_LABELS[method]} "
                f"| {s['accuracy_mean']:.1f} ± {s['accuracy_std']:.1f} "
                f"| {s['macro_f1_mean']:.1f} ± {s['macro_f1_std']:.1f} | {val} |"
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
