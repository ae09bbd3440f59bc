"""``fedledger consortium``: from the plan to kits, membership changes, and watching the federation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.sm9 import fail

app = typer.Typer(no_args_is_help=True)

PlanArgument = Annotated[Path, typer.Argument(help="The consortium plan (consortium.toml).")]
KitsOption = Annotated[Path, typer.Option("--kits", help="The kits folder `consortium provision` made.")]


def _guard(action):  # type: ignore[no-untyped-def]
    """Run ``action``; the project's errors end the command with one line (exit 2)."""
    from fedledger.errors import FedLedgerError

    try:
        return action()
    except FedLedgerError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}")


@app.command("provision")
def provision_command(
    plan: PlanArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for the kits (must not exist yet).")],
) -> None:
    """Make every key the plan needs, the roster, and one kit per party (secrets for that party alone)."""
    from fedledger.consortium.provision import provision

    result = _guard(lambda: provision(plan, out))
    typer.echo(f"kits for {len(result.parties)} parties in {out}; ledger address {result.contract}")
    typer.echo(f"consortium identity {result.consortium_identity}")
    for party in result.parties:
        address = result.addresses.get(party, "")
        typer.echo(f"  {party:<14} {out / party}  {address}  password: {out / (party + '.password')}")
    typer.echo(f"next: fedledger chain deploy --plan {plan} --kits {out}")
