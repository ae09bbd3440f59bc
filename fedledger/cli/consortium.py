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


ApprovalOption = Annotated[
    list[str] | None,
    typer.Option("--approval", help="A member's approval from `fedledger chain approve-change` (repeatable)."),
]
NameOption = Annotated[str, typer.Option("--name", help="The institution's name in the plan.")]


def _report_change(outcome, verb: str) -> None:  # type: ignore[no-untyped-def]
    where = "on the ledger and " if outcome.applied_on_chain else ""
    typer.echo(f"{outcome.name} ({outcome.address}) {verb} {where}in the re-issued kits")
    typer.echo(
        f"members now: {', '.join(outcome.members)}; running nodes and the aggregator reload at their next round"
    )


@app.command("add-member")
def add_member_command(plan: PlanArgument, kits: KitsOption, name: NameOption, approval: ApprovalOption = None) -> None:
    """Add the plan's institution NAME: k approvals on chain, then a new key, split, roster and kits."""
    from fedledger.consortium.membership import add_member

    outcome = _guard(lambda: add_member(plan, kits, name, approval or []))
    _report_change(outcome, "added")
    typer.echo(f"hand over {kits / name} and, apart, {kits / (name + '.password')}")


@app.command("remove-member")
def remove_member_command(
    plan: PlanArgument, kits: KitsOption, name: NameOption, approval: ApprovalOption = None
) -> None:
    """Remove institution NAME: k approvals on chain, then a new split and roster without it."""
    from fedledger.consortium.membership import remove_member

    _report_change(_guard(lambda: remove_member(plan, kits, name, approval or [])), "removed")
