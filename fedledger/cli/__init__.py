"""The ``fedledger`` command line: one Typer app with a sub-command group per responsibility.

Groups from ``fedledger`` itself are imported here; the role packages (``node``, ``aggregator``)
plug their groups in through the ``fedledger.commands`` entry-point group, so nothing in
``fedledger`` imports them. Heavy libraries (torch, web3) are imported inside commands, which
keeps ``fedledger --help`` fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import typer

from fedledger import __version__
from fedledger.cli.bench import bench_app

app = typer.Typer(
    name="fedledger",
    help="Federated learning across hospitals, with every step recorded on an auditable ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

# (group name, module under fedledger.cli, one-line help)
_CORE_GROUPS: list[tuple[str, str, str]] = [
    ("chain", "chain", "Local chain, contract deployment and ledger status."),
    ("kgc", "kgc", "SM9 key generation centre: master keys, user keys, threshold shares."),
    ("sm9", "sm9", "SM9 signing and verification, including threshold signing."),
    ("store", "store", "Content-addressed model store: add, get, CAR export and import."),
    ("fl", "fl", "Federated learning: training, aggregation and the alignment experiment."),
    ("audit", "audit", "Read-only audit REST API over the ledger and the store."),
    ("consortium", "consortium", "From the consortium plan to kits, membership changes, status and metrics."),
]


def _register_core_groups() -> None:
    for name, module_name, help_text in _CORE_GROUPS:
        module = importlib.import_module(f"fedledger.cli.{module_name}")
        app.add_typer(module.app, name=name, help=help_text)


def _register_plugin_groups() -> None:
    for entry in entry_points(group="fedledger.commands"):
        try:
            plugin = entry.load()
        except ImportError as exc:  # a stale or partial install must not take the whole CLI down
            typer.echo(f"fedledger: command group {entry.name!r} unavailable ({exc})", err=True)
            continue
        if isinstance(plugin, typer.Typer):
            app.add_typer(plugin, name=entry.name)
        else:  # a plain function becomes a single command (e.g. `fedledger demo`)
            app.command(entry.name)(plugin)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the fedledger version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


_register_core_groups()
app.add_typer(bench_app, name="bench", help="Benchmarks: each prints its figures, with --json as JSON.")
_register_plugin_groups()


def main() -> None:
    """Console-script entry point."""
    app()
