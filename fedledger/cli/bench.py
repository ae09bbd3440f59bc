"""The ``fedledger bench`` group. Each area's CLI module adds its own ``bench <area>`` command here.

A benchmark returns a JSON-serialisable dict; ``emit`` prints it as JSON or as a readable table.
Ratios are always against a baseline measured in the same run, never against fixed numbers.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

bench_app = typer.Typer(no_args_is_help=True)


def emit(name: str, result: dict[str, Any], as_json: bool) -> None:
    """Print a benchmark result as JSON (machine-readable) or as a table (for people)."""
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    table = Table(title=f"fedledger bench {name}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in _flatten(result):
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    Console().print(table)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for key, value in data.items():
        label = f"{prefix}{key}"
        if isinstance(value, dict):
            rows.extend(_flatten(value, prefix=f"{label}."))
        else:
            rows.append((label, value))
    return rows


@bench_app.command("crypto")
def bench_crypto(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    size_mib: int = typer.Option(1024, "--size-mib", min=1, help="Size of the model file in MiB."),
    quick: bool = typer.Option(False, "--quick", help="A 64 MiB file instead of --size-mib."),
    durable: bool = typer.Option(True, "--durable/--no-fsync", help="fsync store blocks (the store's default)."),
) -> None:
    """Encrypted store put+get vs plain on the same file (goal >= 0.7), hybrid wrap/unwrap per recipient (< 10 ms)."""
    from fedledger.envelope.bench import QUICK_MIB, run_crypto_bench

    emit("crypto", run_crypto_bench(QUICK_MIB if quick else size_mib, durable=durable), as_json)


@bench_app.command("secagg")
def bench_secagg(
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed repetitions (the median is reported)."),
    threads: int = typer.Option(1, "--threads", min=1, help="torch threads for both measurements."),
) -> None:
    """Secure aggregation for 5, 10 and 20 mixed-width members vs plain alignment: time and bytes."""
    from fedledger.fl.training import configure_threads
    from fedledger.secagg.bench import run_benchmark

    configure_threads(threads)
    emit("secagg", run_benchmark(repeats=repeats), as_json)
