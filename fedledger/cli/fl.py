"""``fedledger fl``: the alignment experiment and model-file inspection; ``fedledger bench fl``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.bench import bench_app, emit
from fedledger.cli.common import err_console, fail

app = typer.Typer(no_args_is_help=True)
_DOCS = Path("docs")


def _parse_list(text: str, what: str, kind: type) -> tuple:
    try:
        values = tuple(kind(part.strip()) for part in text.split(",") if part.strip())
    except ValueError:
        fail(f"{what}: cannot parse {text!r}")
    if not values:
        fail(f"{what}: empty list")
    return values


@app.command("experiment")
def experiment(
    quick: bool = typer.Option(False, "--quick", help="One data set, few rounds, one seed (< 1 min); prints JSON."),
    rounds: int = typer.Option(None, "--rounds", min=1, help="Rounds per run (default 50; quick: 8)."),
    epochs: int = typer.Option(None, "--epochs", min=1, help="Local epochs per round (default 1)."),
    seeds: str = typer.Option(None, "--seeds", help="Comma-separated seeds (default 0,1,2; quick: 0)."),
    datasets: str = typer.Option(None, "--datasets", help="Comma-separated: digits, breast_cancer."),
    lr: float = typer.Option(0.05, "--lr", min=1e-6, help="SGD learning rate of round 0."),
    lr_decay: float = typer.Option(0.97, "--lr-decay", min=0.01, max=1.0, help="Learning rate factor per round."),
    mask_absent: bool = typer.Option(
        False, "--mask-absent-classes", help="Mask classes an institution has no samples of (HeteroFL)."
    ),
    logit_adjustment: float = typer.Option(
        1.0,
        "--logit-adjustment",
        min=0.0,
        help="tau of the logit-adjusted (balanced-softmax) local loss, all methods alike; 0 = plain cross-entropy.",
    ),
    proximal_mu: float = typer.Option(0.0, "--proximal-mu", min=0.0, help="FedProx proximal term, all methods alike."),
    tiled_step: float = typer.Option(
        0.5, "--tiled-step", min=0.01, max=1.0, help="Tiled rolling: window advance per round (fraction of a layer)."
    ),
    institutions: str = typer.Option(None, "--institutions", help="Comma-separated federation sizes (default 5,20)."),
    skews: str = typer.Option(
        None, "--skews", help="Comma-separated label skews: Dirichlet alphas (0.1, 1), classes, iid (default all)."
    ),
    models: str = typer.Option(None, "--models", help="Comma-separated: default, deep_cnn (default both)."),
    assignments: str = typer.Option(
        None,
        "--assignments",
        help="Comma-separated width assignments: by_volume, random, against_volume (default all; quick: by_volume).",
    ),
    methods: str = typer.Option(None, "--methods", help="Comma-separated methods (default: all)."),
    aggregation_rule: str = typer.Option(
        "alignment", "--aggregation-rule", help="alignment, trimmed_mean or median (the robust rules)."
    ),
    server_momentum: float = typer.Option(
        0.5,
        "--server-momentum",
        min=0.0,
        max=0.999,
        help="beta of the *_momentum methods (FedAvgM on the aligned model).",
    ),
    poison_scale: float = typer.Option(
        None, "--poison-scale", help="The widest member sends base + scale * (trained - base), e.g. -4."
    ),
    out: Annotated[Path, typer.Option("--out", help="Directory for the table (.md), plot (.png) and JSON.")] = _DOCS,
    stem: str = typer.Option("fl-experiment", "--stem", help="File name stem of the outputs."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads (the machine is shared)."),
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="Directory keeping each run's history: an interrupted experiment resumes."),
    ] = None,
) -> None:
    """Compare centralised, FedAvg full width, FedAvg smallest width and alignment (static, rolling, tiled)."""
    from dataclasses import replace

    from fedledger.fl import experiment as ex
    from fedledger.fl.rules import AGGREGATION_RULES
    from fedledger.fl.training import TrainConfig, configure_threads

    configure_threads(threads)
    base = ex.quick_config() if quick else ex.full_config()
    settings = base.settings
    if datasets is not None:
        names = _parse_list(datasets, "--datasets", str)
        unknown = sorted(set(names) - {"digits", "breast_cancer"})
        if unknown:
            fail(f"--datasets: unknown {unknown}; choose from digits, breast_cancer")
        pool = ex.full_config().settings
        settings = tuple(s for s in pool if s.dataset in names)
        if quick:
            settings = tuple(s for s in settings if s == replace(ex.quick_config().settings[0], dataset=s.dataset))
    try:
        train = TrainConfig(
            epochs=epochs or base.train.epochs,
            batch_size=base.train.batch_size,
            lr=lr,
            mask_absent_classes=mask_absent,
            logit_adjustment=logit_adjustment,
            proximal_mu=proximal_mu,
        )
    except ValueError as exc:
        fail(str(exc))
    if institutions is not None:
        sizes = _parse_list(institutions, "--institutions", int)
        if min(sizes) < 1:
            fail("--institutions: sizes must be positive")
        settings = tuple(dict.fromkeys(replace(s, institutions=n) for s in settings for n in sizes))
    if skews is not None:
        wanted = _parse_list(skews, "--skews", str)
        settings = tuple(s for s in settings if (s.scheme if s.alpha is None else f"{s.alpha:g}") in wanted)
    if models is not None:
        settings = tuple(s for s in settings if s.model in _parse_list(models, "--models", str))
    if not settings:
        fail("no setting left after --datasets / --skews / --models")
    chosen_assignments = _parse_list(assignments, "--assignments", str) if assignments else base.assignments
    chosen_methods = _parse_list(methods, "--methods", str) if methods else base.methods
    if aggregation_rule != "alignment":  # server momentum is defined on the aligned mean only
        if methods is None:
            chosen_methods = tuple(m for m in chosen_methods if not m.endswith("_momentum"))
        elif any(m.endswith("_momentum") for m in chosen_methods):
            fail("--methods: the *_momentum methods need --aggregation-rule alignment")
    for what, chosen, allowed in (
        ("--assignments", chosen_assignments, ex.ASSIGNMENTS),
        ("--methods", chosen_methods, ex.METHODS),
        ("--aggregation-rule", (aggregation_rule,), AGGREGATION_RULES),
    ):
        unknown = sorted(set(chosen) - set(allowed))
        if unknown:
            fail(f"{what}: unknown {unknown}; choose from {', '.join(allowed)}")
    config = ex.ExperimentConfig(
        settings,
        assignments=chosen_assignments,
        methods=chosen_methods,
        aggregation_rule=aggregation_rule,
        poison_scale=poison_scale,
        server_momentum=server_momentum,
        seeds=_parse_list(seeds, "--seeds", int) if seeds else base.seeds,
        rounds=rounds or base.rounds,
        train=train,
        lr_decay=lr_decay,
        tiled_step=tiled_step,
    )
    started = time.monotonic()
    total = len(config.settings) * len(config.assignments) * len(config.methods) * len(config.seeds)
    done = 0

    def progress(message: str) -> None:
        nonlocal done
        done += 1
        err_console.print(f"[{done}/{total}] {message} ({time.monotonic() - started:.0f}s)")

    results = ex.run_experiment(config, progress, cache)
    elapsed = time.monotonic() - started
    if quick:
        summary = ex.summary_json(results)
        summary["seconds"] = round(elapsed, 1)
        typer.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    paths = ex.write_outputs(results, out, stem)
    typer.echo(ex.markdown_table(results))
    err_console.print(f"wrote {paths['markdown']}, {paths['png']}, {paths['json']} in {elapsed:.0f}s")


@app.command("inspect")
def inspect(path: Annotated[Path, typer.Argument(help="An update or global model file (.safetensors).")]) -> None:
    """Print a model file's metadata and SM3 digest as JSON (never executes file content)."""
    from fedledger.digests import sm3_file
    from fedledger.fl.update_format import ModelFileError, load_global, load_update

    try:
        state, meta = load_update(path)
        info: dict[str, object] = {
            "kind": "update",
            "institution": meta.institution,
            "round": meta.round_index,
            "num_samples": meta.num_samples,
            "width_rate": meta.width_rate,
            "selection": meta.selection,
            "base_digest": meta.base_digest.hex(),
            "mapping_digest": meta.mapping_digest.hex(),
        }
    except ModelFileError as update_error:
        try:
            state, gmeta = load_global(path)
        except ModelFileError:
            fail(str(update_error))
        info = {"kind": "global", "round": gmeta.round_index, "spec": gmeta.spec.to_dict() if gmeta.spec else None}
    info["sm3"] = sm3_file(path).hex()
    info["parameters"] = sum(int(t.numel()) for t in state.values())
    info["tensors"] = {name: list(t.shape) for name, t in sorted(state.items())}
    typer.echo(json.dumps(info, indent=2, sort_keys=True))


@bench_app.command("fl")
def bench_fl(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Timed repetitions (the median is reported)."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads for both measurements."),
) -> None:
    """Alignment of 10 mixed-width updates of a ~10M-parameter model vs a plain weighted sum."""
    from fedledger.fl.bench import run_benchmark
    from fedledger.fl.training import configure_threads

    configure_threads(threads)
    emit("fl", run_benchmark(repeats=repeats), as_json)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
