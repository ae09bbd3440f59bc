"""``fedledger demo``: a whole consortium on this machine, every party in its own process.

A local Anvil chain, the ledger contract, a KGC (SM9 master key, institution keys, k-of-n shares of
the consortium key), five institutions at widths 1, 1/2, 1/2, 1/4, 1/8 training on digits split by
Dirichlet(0.5), the aggregator, and the audit API. Parties talk only through the chain, the store
and the aggregator's HTTP API. At the end the audit API's summary says whether every entry checks out.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from demo.adversary import KINDS
from demo.adversary_verdict import judge_adversary
from demo.processes import CLI, ChildProcesses, node_run_args
from fedledger.cli.bench import bench_app, emit
from fedledger.cli.common import FAILED, console, fail
from fedledger.netutil import free_port


def _accuracy_per_round(layout: Any, rounds: int) -> list[dict[str, float]]:
    """Evaluate each posted global model on the institutions' pooled local test splits.

    The models are sealed: the first institution opens them with its reader keys, as a member would.
    """
    import numpy as np

    from demo.in_process import password_of
    from fedledger.chain.deploy import Deployment
    from fedledger.fl import evaluate, load_dataset, load_global, partition
    from fedledger.protocol.model_files import get_model
    from fedledger.protocol.readers import READER_KEYS_FILE, load_reader_keys
    from fedledger.store import open_store

    ledger = Deployment.load(layout.root / "deployment.json").client()
    store = open_store(layout.store_spec)
    member = layout.node_dirs[0]
    keys = load_reader_keys(member / "keys" / READER_KEYS_FILE, password_of(member))
    if keys is None:
        raise FileNotFoundError(f"{member}: no reader keys to open the sealed global models with")
    # the institutions' own test splits, pooled: the same partition the nodes make
    shards = partition(load_dataset(layout.dataset), len(layout.node_dirs), "dirichlet", layout.alpha, layout.seed)
    X = np.concatenate([s.test.X for s in shards])
    y = np.concatenate([s.test.y for s in shards])
    out = []
    for event in ledger.rounds_opened()[: rounds + 1]:
        path = layout.root / "evaluation" / f"global-before-round-{event.round}.safetensors"
        path.parent.mkdir(exist_ok=True)
        get_model(store, event.base_cid, event.base_digest, path, keys)
        state, meta = load_global(path)
        out.append({"round": event.round, **evaluate(meta.spec, state, X, y)})  # type: ignore[arg-type]
    posted = ledger.global_models_posted()
    if len(posted) >= rounds:
        path = layout.root / "evaluation" / f"global-after-round-{rounds - 1}.safetensors"
        get_model(store, posted[rounds - 1].cid, posted[rounds - 1].digest, path, keys)
        state, meta = load_global(path)
        out.append({"round": rounds, **evaluate(meta.spec, state, X, y)})  # type: ignore[arg-type]
    return out


def _plot(points: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["round"] for p in points], [p["accuracy"] for p in points], marker="o", label="accuracy")
    ax.plot([p["round"] for p in points], [p["macro_f1"] for p in points], marker="s", label="macro-F1")
    ax.set_xlabel("rounds completed (0 = initial model)")
    ax.set_ylabel("score on pooled local test splits")
    ax.set_ylim(0, 1)
    ax.set_xticks([int(p["round"]) for p in points])
    ax.set_title("fedledger demo: digits, widths 1, 1/2, 1/2, 1/4, 1/8")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(
    workdir: Path,
    rounds: int,
    timeout: float,
    progress: bool,
    adversary: str | None = None,
    epochs: int = 5,
    secure_aggregation: bool = False,
    dp_epsilon: float | None = None,
) -> dict[str, Any]:
    """Run the whole demo; returns the closing summary.

    With ``adversary`` (a ``demo.adversary`` kind), hospital-5 runs as that misbehaving member; with
    ``secure_aggregation`` every round sums masked inputs (every party's config says so). With
    ``dp_epsilon`` the ledger's privacy budget is that epsilon (delta 1e-5) and the noise (central, or
    the members' shares in secure rounds) is calibrated so the ``rounds`` rounds spend it; the summary
    adds the audit's account.
    """
    import httpx
    from rich.progress import Progress

    from demo.consortium_setup import setup_consortium
    from fedledger.chain.deploy import Deployment
    from fedledger.chain.localchain import LocalChain

    if workdir.exists():
        shutil.rmtree(workdir)
    (workdir / "logs").mkdir(parents=True)
    exe = CLI
    started = time.monotonic()

    def say(text: str) -> None:
        if progress:
            typer.echo(text, err=True)

    say("starting a local Anvil chain")
    with LocalChain("anvil") as chain:
        say("deploying the ledger; KGC: SM9 master key, 5 institution keys, 3-of-5 consortium key shares")
        layout = setup_consortium(
            workdir,
            chain.rpc_url,
            aggregator_port=free_port(),
            epochs=epochs,
            secure_aggregation=secure_aggregation,
            dp_epsilon=dp_epsilon,
        )
        procs = ChildProcesses(workdir / "logs")
        audit_port = free_port()
        try:
            agg = layout.aggregator_dir
            procs.start(
                "aggregator",
                [
                    *exe,
                    "aggregator",
                    "run",
                    "-c",
                    str(agg),
                    "--rounds",
                    str(rounds),
                    "--password-file",
                    str(agg / "password"),
                    "-v",
                    *(["--secure-aggregation"] if secure_aggregation else []),
                ],
            )
            for home in layout.node_dirs:
                if adversary is not None and home == layout.node_dirs[-1]:
                    procs.start(
                        home.name,
                        [
                            sys.executable,
                            "-m",
                            "demo.adversary",
                            "-c",
                            str(home),
                            "--kind",
                            adversary,
                            "--rounds",
                            str(rounds),
                        ],
                    )
                    continue
                procs.start(home.name, node_run_args(home, rounds, "-v"))
            import importlib.util

            if importlib.util.find_spec("fedledger.cli.audit") is not None:
                procs.start(
                    "audit",
                    [
                        *exe,
                        "audit",
                        "serve",
                        "--deployment",
                        str(workdir / "deployment.json"),
                        "--store",
                        layout.store_spec,
                        "--master-public-key",
                        str(layout.master_public_key),
                        "--port",
                        str(audit_port),
                    ],
                )
            if adversary is not None:
                say(f"{layout.node_dirs[-1].name} misbehaves: {adversary}")
            say(f"started the aggregator, 5 institutions and the audit API (logs: {workdir / 'logs'})")
            ledger = Deployment.load(workdir / "deployment.json").client()
            with Progress(disable=not progress, transient=True) as bar:
                task = bar.add_task("federated rounds", total=rounds)
                while True:
                    posted = len(ledger.global_models_posted())
                    bar.update(task, completed=posted)
                    if posted >= rounds and procs.children["aggregator"].poll() is not None:
                        break
                    failed = procs.failed()
                    if failed:
                        raise RuntimeError(f"{failed} exited with an error; see {workdir / 'logs'}")
                    if time.monotonic() - started > timeout:
                        raise RuntimeError(f"demo did not finish within {timeout:.0f} s; see {workdir / 'logs'}")
                    time.sleep(0.5)
            audit_url = f"http://127.0.0.1:{audit_port}"
            summary: dict[str, Any] = {}
            privacy: dict[str, Any] = {}
            for _ in range(120 if "audit" in procs.children else 0):
                try:
                    summary = httpx.get(f"{audit_url}/summary", timeout=60).json()
                    privacy = httpx.get(f"{audit_url}/privacy", timeout=60).json() if dp_epsilon else {}
                    break
                except httpx.HTTPError:
                    time.sleep(0.5)
            say("evaluating each round's global model; asking the audit API for its summary")
            accuracy = _accuracy_per_round(layout, rounds)
            _plot(accuracy, workdir / "accuracy.png")
        finally:
            procs.stop()
    summary_out: dict[str, Any] = {
        "rounds": rounds,
        "contract": layout.deployment.address,
        "seconds": round(time.monotonic() - started, 1),
        "accuracy_per_round": accuracy,
        "plot": str(workdir / "accuracy.png"),
        "audit": summary,
        "logs": str(workdir / "logs"),
    }
    if dp_epsilon is not None:
        summary_out["privacy"] = privacy
    if adversary is not None:
        summary_out["adversary"] = judge_adversary(
            summary, layout.consortium.members[-1], adversary, rounds, workdir / "logs" / "aggregator.log"
        )
    return summary_out


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo writes keys, store, logs and the plot.")] = Path(
        "demo-output"
    ),
    rounds: Annotated[int, typer.Option(min=1, max=20, help="Federated rounds to run.")] = 3,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the closing summary as JSON.")] = False,
    adversary: Annotated[
        str | None,
        typer.Option(
            help=f"hospital-5 misbehaves every round: {', '.join(sorted(KINDS))}. The demo succeeds only if "
            "every honest entry is verified and each bad one is rejected with its reason.",
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=50, help="Local epochs per institution and round.")] = 5,
    secure_aggregation: Annotated[
        bool,
        typer.Option(
            "--secure-aggregation",
            help="Rounds sum masked inputs: the aggregator never sees one hospital's update (docs/secagg.md).",
        ),
    ] = False,
    dp_epsilon: Annotated[
        float | None,
        typer.Option(
            "--dp-epsilon",
            min=0.001,
            help="DP: the ledger's privacy budget (delta 1e-5), spent by the --rounds rounds together; "
            "the audit's epsilon per round and in total is shown at the end. With --secure-aggregation the "
            "members clip and add their shares of the noise before masking (docs/secagg.md).",
        ),
    ] = None,
) -> None:
    """Run a whole consortium locally: chain, KGC, 5 institutions, aggregator, audit API."""
    if adversary is not None and adversary not in KINDS:
        fail(f"unknown adversary {adversary!r}; choose one of {', '.join(sorted(KINDS))}")
    if adversary is not None and secure_aggregation:
        fail("--adversary runs with plain rounds only: choose one of --adversary and --secure-aggregation")
    try:
        summary = run_demo(
            workdir.resolve(), rounds, timeout, not as_json, adversary, epochs, secure_aggregation, dp_epsilon
        )
    except RuntimeError as exc:
        fail(str(exc), FAILED)
    audit = summary.get("audit") or {}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    verdict = summary["adversary"]["ok"] if adversary is not None else audit.get("all_verified")
    if dp_epsilon is not None and not (summary.get("privacy") or {}).get("within_budget"):
        verdict = False
    if not verdict:
        raise typer.Exit(FAILED)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"fedledger demo: {summary['rounds']} rounds in {summary['seconds']} s")
    table.add_column("global model")
    table.add_column("accuracy", justify="right")
    table.add_column("macro-F1", justify="right")
    for point in summary["accuracy_per_round"]:
        label = "initial" if point["round"] == 0 else f"after round {point['round'] - 1}"
        table.add_row(label, f"{point['accuracy']:.3f}", f"{point['macro_f1']:.3f}")
    console.print(table)
    audit = summary.get("audit") or {}
    if not audit:
        console.print("[red]audit API gave no summary[/red]")
        return
    updates, globals_ = audit["updates"], audit["global_models"]
    verdict = "[green]every entry verified[/green]" if audit["all_verified"] else "[red]FAILED checks[/red]"
    if "adversary" in summary:  # its entries fail the audit by design; the adversary line judges the rest
        verdict = "the checks below failed"
    console.print(
        f"audit ({audit['consortium_identity']}, k={audit['threshold']}): {verdict}: "
        f"{updates['verified']}/{updates['total']} updates, {globals_['verified']}/{globals_['total']} "
        f"global models, {audit.get('access_records', 0)} access records"
    )
    for failure in audit.get("failures", []):
        console.print(
            f"  [red]round {failure['round']} {failure['kind']} {failure.get('cid')}: "
            f"{failure['check']}: {failure['detail']}[/red]"
        )
    if "adversary" in summary:
        _print_adversary(summary["adversary"])
    if "privacy" in summary:
        _print_privacy(summary["privacy"])
    console.print(f"contract {summary['contract']}; plot {summary['plot']}; logs {summary['logs']}")


def _print_privacy(account: dict[str, Any]) -> None:
    """The audit's epsilon, recomputed from the ledger: per round, in total, and the on-chain budget."""
    budget = account.get("budget")
    if not budget:
        console.print("[red]audit API gave no privacy account[/red]")
        return
    per_round = ", ".join(f"r{r['round']} {r['epsilon']:.2f}" for r in account["rounds"] if r["epsilon"] is not None)
    colour = "green" if account["within_budget"] else "red"
    console.print(
        f"[{colour}]privacy: epsilon spent {account['spent_epsilon']:.3f} of the ledger's budget "
        f"{budget['epsilon']:g} (delta {budget['delta']:g}); per round {per_round}[/{colour}]"
    )


def _print_adversary(judged: dict[str, Any]) -> None:
    colour = "green" if judged["ok"] else "red"
    console.print(f"[{colour}]adversary {judged['member']} ({judged['kind']}): {judged['verdict']}[/{colour}]")
    for rejection in judged["rejected"]:
        console.print(f"  round {rejection['round']} rejected: {rejection['reason']}")


@bench_app.command("round")
def bench_round(
    epochs: Annotated[int, typer.Option(min=1, help="Local epochs per institution (more = more FL work).")] = 5,
    runs: Annotated[int, typer.Option(min=1, help="Measure this many times; the median run is the headline.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Wall time of one round with ledger, store and SM9 against the same FL round without them."""
    from demo.bench_round import run

    emit("round", run(epochs, runs), as_json)


@bench_app.command("secure-round")
def bench_secure_round(
    epochs: Annotated[int, typer.Option(min=1, help="Local epochs per institution.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """A secure-aggregation round against a plain one in the real protocol: time and bytes per member."""
    from demo.bench_secure_round import run

    emit("secure-round", run(epochs), as_json)


@bench_app.command("scale")
def bench_scale(
    sizes: Annotated[str, typer.Option(help="Institution counts, comma-separated (k = ceil(2n/3)).")] = "5,10,20,40",
    rounds: Annotated[int, typer.Option(min=2, help="Rounds per size (round 0 is start-up, not averaged).")] = 10,
    rounds_at_40: Annotated[
        int | None, typer.Option(min=2, help="Fewer rounds for n >= 40 when time-bound (default: --rounds).")
    ] = None,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="Also draw the figures to this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Protocol seconds, phases, gas, aggregator CPU, one node's bytes and audit time for growing consortia."""
    from demo.bench_scale import plot, run

    try:
        counts = tuple(int(s) for s in sizes.split(","))
    except ValueError:
        raise typer.BadParameter(f"--sizes must be integers separated by commas, not {sizes!r}") from None
    if any(n < 2 for n in counts):
        raise typer.BadParameter("every size must be at least 2 institutions")
    result = run(counts, rounds, rounds_at_40)
    if plot_path is not None:
        result["plot"] = str(plot(result, plot_path))
    emit("scale", result, as_json)
