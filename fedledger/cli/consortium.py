"""``fedledger consortium``: from the plan to kits, membership changes, and watching the federation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import FAILED, guarded

app = typer.Typer(no_args_is_help=True)

PlanArgument = Annotated[Path, typer.Argument(help="The consortium plan (consortium.toml).")]
KitsOption = Annotated[Path, typer.Option("--kits", help="The kits folder `consortium provision` made.")]
UnsealedOption = Annotated[
    bool,
    typer.Option(
        "--unsealed",
        help="Run a kit provisioned before sealing (its roster publishes no encryption key): "
        "model files then enter the store in plaintext.",
    ),
]


@app.command("provision")
def provision_command(
    plan: PlanArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for the kits (must not exist yet).")],
) -> None:
    """Make every key the plan needs, the roster, and one kit per party (secrets for that party alone)."""
    from fedledger.consortium.provision import provision

    result = guarded(lambda: provision(plan, out))
    typer.echo(f"kits for {len(result.parties)} parties in {out}; ledger address {result.contract}")
    typer.echo(f"consortium identity {result.consortium_identity}")
    for party in result.parties:
        address = result.addresses.get(party, "(no account)")
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

    outcome = guarded(lambda: add_member(plan, kits, name, approval or []))
    _report_change(outcome, "added")
    typer.echo(f"hand over {kits / name} and, apart, {kits / (name + '.password')}")


@app.command("remove-member")
def remove_member_command(
    plan: PlanArgument, kits: KitsOption, name: NameOption, approval: ApprovalOption = None
) -> None:
    """Remove institution NAME: k approvals on chain, then a new split and roster without it."""
    from fedledger.consortium.membership import remove_member

    _report_change(guarded(lambda: remove_member(plan, kits, name, approval or [])), "removed")


@app.command("status")
def status_command(
    kits: KitsOption,
    plan: Annotated[Path | None, typer.Option("--plan", help="The plan (default: the copy in the KGC's kit).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Per institution: member, last seen, submitted this round, waited on; the open round and its deadline."""
    import json

    from fedledger.consortium.status import federation_status, render

    status = guarded(lambda: federation_status(kits, plan), FAILED)
    if as_json:
        typer.echo(json.dumps(status.to_dict(), indent=2))
        return
    for line in render(status):
        typer.echo(line)


@app.command("metrics")
def metrics_command(
    kits: KitsOption,
    plot: Annotated[Path | None, typer.Option("--plot", help="Also draw the rounds' metrics into this PNG.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-round metrics as JSON.")] = False,
) -> None:
    """Per round: each site's metric on its own validation split (signed, re-verified here) and the federated one."""
    import json

    from fedledger.consortium.kits import PLAN_FILE, ROSTER_FILE
    from fedledger.consortium.metrics import fetch_verified, per_round
    from fedledger.consortium.metrics import plot as draw
    from fedledger.consortium.plan import load_plan
    from fedledger.protocol.consortium import Consortium

    plan = guarded(lambda: load_plan(kits / "kgc" / PLAN_FILE))
    roster = guarded(lambda: Consortium.load(kits / ROSTER_FILE))
    saved = kits / "aggregator" / "state" / "metrics.json"
    reports, bad = guarded(lambda: fetch_verified(plan.aggregator.url, roster, saved), FAILED)
    rounds = per_round(reports)
    if as_json:
        typer.echo(json.dumps({"rounds": rounds, "unverified_reports": bad}, indent=2))
    else:
        for r in rounds:
            sites = ", ".join(f"{name} {value:.3f}" for name, value in sorted(r["sites"].items()))
            typer.echo(
                f"round {r['round']}: federated {r['metric']} {r['federated']:.3f} on {r['samples']} samples ({sites})"
            )
        if bad:
            typer.echo(f"{bad} report(s) failed their signature check and are left out", err=True)
    if plot is not None:
        guarded(lambda: draw(rounds, plot, f"{plan.name}: {plan.task.metric} per round"))
        typer.echo(f"plot: {plot}")
