"""The root ``fedledger`` app: one Typer app with a sub-command group per responsibility.

Groups from ``fedledger`` itself are imported here; the role packages (``node``, ``aggregator``)
plug their groups in through the ``fedledger.commands`` entry-point group, so nothing in
``fedledger`` imports them. Heavy libraries (torch, web3) are imported inside commands, which
keeps ``fedledger --help`` fast.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from fedledger import __version__
from fedledger.cli import audit, chain, consortium, fl, kgc, sm9, store
from fedledger.cli.bench import bench_app

app = typer.Typer(
    name="fedledger",
    help="Federated learning across hospitals, with every step recorded on an auditable ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _register_core_groups() -> None:
    app.add_typer(chain.app, name="chain", help="Local chain, contract deployment, membership and ledger status.")
    app.add_typer(kgc.app, name="kgc", help="SM9 key generation centre: master keys, user keys, threshold shares.")
    app.add_typer(sm9.app, name="sm9", help="SM9 signing and verification, including threshold signing.")
    app.add_typer(store.app, name="store", help="Content-addressed model store: add, get, CAR export and import.")
    app.add_typer(fl.app, name="fl", help="Federated learning: training, aggregation and the alignment experiment.")
    app.add_typer(audit.app, name="audit", help="Read-only audit REST API over the ledger and the store.")
    app.add_typer(
        consortium.app,
        name="consortium",
        help="From the consortium plan to kits, membership changes, status and metrics.",
    )


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


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the fedledger version and exit."
    ),
) -> None:
    """Eager --version answers before click asks for a command."""


_register_core_groups()
app.add_typer(bench_app, name="bench", help="Benchmarks: each prints its figures, with --json as JSON.")
_register_plugin_groups()


def main() -> None:
    """Console-script entry point."""
    app()
