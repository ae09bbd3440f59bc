"""``fedledger audit``: serve the read-only audit REST API, or print the audit summary without one.

Both commands take the same inputs: which ledger (a deployment file, or an RPC URL and a contract
address), which content store, and the KGC's SM9 master public key (the only key the auditor
needs: everything it checks is public). FastAPI, uvicorn and web3 load inside the commands.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fedledger.cli.common import FAILED, console, err_console, fail

if TYPE_CHECKING:
    from fedledger.audit.models import AuditSummary
    from fedledger.audit.service import AuditService

app = typer.Typer(no_args_is_help=True)
CHAIN_UNREACHABLE = 3  # `audit summary`'s own exit code, beside the shared 1 and 2

DeploymentOpt = Annotated[
    Path | None,
    typer.Option(
        "--deployment",
        "--deployment-file",
        help="Deployment JSON file (default: $FEDLEDGER_DEPLOYMENT or .fedledger/deployment.json, "
        "unless --rpc-url and --contract are given).",
    ),
]
RpcUrlOpt = Annotated[str | None, typer.Option("--rpc-url", help="Chain RPC URL (overrides the deployment file's).")]
ContractOpt = Annotated[
    str | None,
    typer.Option("--contract", help="Ledger contract address (with --rpc-url, instead of a deployment file)."),
]
FromBlockOpt = Annotated[
    int, typer.Option("--from-block", help="First block to read events from (with --contract; default 0).")
]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", help="Content store: local:DIR or kubo:ADDRESS (default: $FEDLEDGER_STORE or ~/.fedledger/store)."
    ),
]
MpkOpt = Annotated[
    Path,
    typer.Option("--master-public-key", help="The KGC's SM9 sign master public key (PEM file)."),
]
IdentityOpt = Annotated[
    str | None,
    typer.Option(
        "--consortium-identity",
        help="SM9 identity round records are threshold-signed under "
        "(default: consortium:<chain id>:<contract address>).",
    ),
]
ConfirmationsOpt = Annotated[
    int, typer.Option("--confirmations", help="Ignore the newest N blocks (chains that reorganise).")
]


def _service(
    deployment: Path | None,
    rpc_url: str | None,
    contract: str | None,
    from_block: int,
    store: str | None,
    master_public_key: Path,
    consortium_identity: str | None,
    confirmations: int,
) -> AuditService:
    from fedledger.audit.errors import InvalidParameter
    from fedledger.audit.params import check_confirmations
    from fedledger.audit.setup import open_audit_service
    from fedledger.store import default_store_spec

    try:
        check_confirmations(confirmations)
    except InvalidParameter as exc:
        fail(exc.message)
    if deployment is None and (rpc_url is None or contract is None):
        from fedledger.chain.deploy import DEFAULT_DEPLOYMENT_FILE, DEPLOYMENT_ENV

        deployment = Path(os.environ.get(DEPLOYMENT_ENV) or DEFAULT_DEPLOYMENT_FILE)
        if not deployment.exists():
            fail(f"no deployment file at {deployment}: pass --deployment FILE, or --rpc-url and --contract")
    try:
        return open_audit_service(
            store=store or default_store_spec(),
            master_public_key=master_public_key,
            deployment=deployment,
            rpc_url=rpc_url,
            contract=contract,
            from_block=from_block,
            consortium_identity=consortium_identity,
            confirmations=confirmations,
        )
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))


def print_summary(summary: AuditSummary) -> None:
    """The summary for people: the ledger, the counts, then every failure."""
    console.print(
        f"ledger {summary.contract} on chain {summary.chain_id}, checked at block {summary.checked_at_block}",
        highlight=False,
    )
    if summary.status == "nothing_to_verify":
        console.print(f"[bold yellow]nothing to verify: {summary.rounds} rounds[/]", highlight=False)
        return
    open_round = f", round {summary.open_round} open" if summary.open_round is not None else ""
    console.print(
        f"{summary.rounds} round(s), {summary.rounds_posted} posted{open_round}; k = {summary.threshold} "
        f"of {summary.institutions} active institutions; {summary.access_records} access record(s)",
        highlight=False,
    )
    console.print(f"updates:       {summary.updates.verified}/{summary.updates.total} verified", highlight=False)
    console.print(
        f"global models: {summary.global_models.verified}/{summary.global_models.total} verified",
        highlight=False,
    )
    if summary.all_verified:
        console.print("[bold green]every entry verified[/]")
        return
    console.print(f"[bold red]{len(summary.failures)} failed check(s):[/]")
    for f in summary.failures:
        where = f"round {f.round} {f.kind}" + (f" of {f.institution}" if f.institution else "")
        console.print(f"  {where}: [bold]{f.check}[/]: {f.detail}", highlight=False, soft_wrap=True)


@app.command("summary")
def summary(
    master_public_key: MpkOpt,
    deployment: DeploymentOpt = None,
    rpc_url: RpcUrlOpt = None,
    contract: ContractOpt = None,
    from_block: FromBlockOpt = 0,
    store: StoreOpt = None,
    consortium_identity: IdentityOpt = None,
    confirmations: ConfirmationsOpt = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check every entry on the ledger now and print what verified and what failed.

    Exit status: 0 when everything verified, 1 when some check failed or there was nothing to verify,
    2 for bad input, 3 when the chain cannot be reached or is not the configured ledger (no contract
    code, another chain id or deployment, a rollback).
    """
    from fedledger.audit.errors import AuditError

    service = _service(
        deployment, rpc_url, contract, from_block, store, master_public_key, consortium_identity, confirmations
    )
    try:
        status = console.status("checking the ledger, the store and the signatures...")
        with contextlib.nullcontext() if as_json else status:
            result = service.summary()
    except AuditError as exc:
        fail(exc.message, CHAIN_UNREACHABLE)
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), indent=2))
    else:
        print_summary(result)
    if not result.all_verified:
        raise typer.Exit(FAILED)


@app.command("serve")
def serve(
    master_public_key: MpkOpt,
    deployment: DeploymentOpt = None,
    rpc_url: RpcUrlOpt = None,
    contract: ContractOpt = None,
    from_block: FromBlockOpt = 0,
    store: StoreOpt = None,
    consortium_identity: IdentityOpt = None,
    confirmations: ConfirmationsOpt = 0,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8600,
    log_level: Annotated[
        str, typer.Option("--log-level", help="uvicorn log level: critical, error, warning, info, debug.")
    ] = "info",
    aggregator_url: Annotated[
        str | None, typer.Option("--aggregator-url", help="Also serve the sites' signed per-round metrics (/metrics).")
    ] = None,
) -> None:
    """Serve the read-only audit REST API (OpenAPI docs at /docs, summary at /summary)."""
    from fedledger.audit.errors import InvalidParameter
    from fedledger.audit.params import check_log_level, check_port

    try:
        check_port(port)
        check_log_level(log_level)
    except InvalidParameter as exc:
        fail(exc.message)
    service = _service(
        deployment, rpc_url, contract, from_block, store, master_public_key, consortium_identity, confirmations
    )
    import uvicorn

    from fedledger.audit.api import create_app

    err_console.print(
        f"audit API for ledger {service.ledger.address} on http://{host}:{port} (docs: /docs)", highlight=False
    )
    uvicorn.run(create_app(service, aggregator_url), host=host, port=port, log_level=log_level)
