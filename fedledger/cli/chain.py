"""``fedledger chain``: run a local chain, deploy the ledger, change its membership, show its status.

web3 and the compiler are imported inside the commands so ``fedledger --help`` stays fast.
Private keys are never printed: dev keys are derived in-process, other keys come from a file or
the environment.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from fedledger.cli.bench import bench_app, emit
from fedledger.cli.common import FAILED, console, err_console, errors_reported, fail, read_password

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from fedledger.chain.deploy import Deployment

app = typer.Typer(no_args_is_help=True)

DEPLOYMENT_FILE_HELP = "Deployment JSON file (default: $FEDLEDGER_DEPLOYMENT or .fedledger/deployment.json)."
KEY_ENV = "FEDLEDGER_DEPLOYER_KEY"


def _tool_failures() -> tuple[type[Exception], ...]:
    """Failures of the chain tooling that deserve a message (exit 1), not a traceback."""
    from fedledger.chain.compiler import CompilationError
    from fedledger.chain.errors import LedgerError
    from fedledger.chain.localchain import LocalChainError
    from fedledger.chain.paths import ToolNotFoundError

    return (LedgerError, LocalChainError, CompilationError, ToolNotFoundError)


def _check_kind(kind: str) -> Any:
    if kind not in ("anvil", "hardhat"):
        fail(f"--kind must be 'anvil' or 'hardhat', not {kind!r}")
    return kind


def _default_deployment_file() -> Path:
    from fedledger.chain.deploy import DEFAULT_DEPLOYMENT_FILE, DEPLOYMENT_ENV

    return Path(os.environ.get(DEPLOYMENT_ENV) or DEFAULT_DEPLOYMENT_FILE)


def _print_deployment(deployment: Deployment, path: Path) -> None:
    console.print(f"RPC URL:    [bold]{deployment.rpc_url}[/]", highlight=False)
    console.print(f"chain id:   {deployment.chain_id}", highlight=False)
    console.print(f"contract:   [bold]{deployment.address}[/] (block {deployment.deploy_block})", highlight=False)
    console.print(f"aggregator: {deployment.aggregator}", highlight=False)
    console.print(f"k of n:     {deployment.threshold} of {len(deployment.institutions)}", highlight=False)
    for spec in deployment.institutions:
        console.print(f"  institution {spec.address}  SM9 id {spec.sm9_id}", highlight=False)
    console.print(f"deployment written to {path}", highlight=False)


# ---------------------------------------------------------------------------------- privacy budget

DpEpsilonOption = Annotated[
    float | None,
    typer.Option("--dp-epsilon", help="The consortium's differential-privacy budget epsilon (default: no budget)."),
]
DpDeltaOption = Annotated[float, typer.Option("--dp-delta", help="The privacy budget's delta (with --dp-epsilon).")]


def _privacy_budget(epsilon: float | None, delta: float) -> Any:
    """The budget a command sets (none without --dp-epsilon); a one-line error for bad values."""
    from fedledger.chain.approvals import NO_PRIVACY_BUDGET, PrivacyBudgetSetting

    if epsilon is None:
        return NO_PRIVACY_BUDGET
    try:
        return PrivacyBudgetSetting.of(epsilon, delta)
    except ValueError as exc:
        fail(str(exc))


# ---------------------------------------------------------------------------------- up


@app.command("up")
def up(
    kind: Annotated[str, typer.Option("--kind", help="Local chain to run: anvil or hardhat.")] = "anvil",
    port: Annotated[int, typer.Option("--port", help="Port on 127.0.0.1 (0: pick a free one).")] = 0,
    state: Annotated[
        Path | None,
        typer.Option("--state", help="Anvil state file: loaded if present, saved every second and on exit."),
    ] = None,
    institutions: Annotated[int, typer.Option("--institutions", help="Number of dev institutions (1..7).")] = 5,
    threshold: Annotated[int, typer.Option("--threshold", "-k", help="Approvals required (k).")] = 3,
    deployment_file: Annotated[Path | None, typer.Option("--deployment-file", help=DEPLOYMENT_FILE_HELP)] = None,
    dp_epsilon: DpEpsilonOption = None,
    dp_delta: DpDeltaOption = 1e-5,
) -> None:
    """Start a local chain, deploy the ledger for dev institutions, and keep running until Ctrl-C."""
    chain_kind = _check_kind(kind)
    budget = _privacy_budget(dp_epsilon, dp_delta)
    if not 1 <= institutions <= 7:
        fail(f"--institutions must be between 1 and 7, not {institutions}")
    if not 1 <= threshold <= institutions:
        fail(f"--threshold must be between 1 and --institutions ({institutions}), not {threshold}")
    if not 0 <= port <= 65535:
        fail(f"--port must be 0..65535, not {port}")
    if state is not None and chain_kind != "anvil":
        fail("--state works with --kind anvil only")
    from web3 import HTTPProvider, Web3

    from fedledger.chain.deploy import deploy_ledger, dev_consortium
    from fedledger.chain.devaccounts import dev_roles
    from fedledger.chain.localchain import LocalChain

    path = deployment_file or _default_deployment_file()
    chain = LocalChain(chain_kind, port=port or None, state_path=state)
    try:
        with console.status(f"starting {chain_kind}"):
            chain.start()
    except _tool_failures() as exc:
        fail(str(exc), FAILED)
    try:
        w3 = Web3(HTTPProvider(chain.rpc_url))
        deployment = _reuse_persisted(w3, path, chain.rpc_url) if state is not None else None
        if deployment is None:
            roles = dev_roles(institutions)
            with console.status("compiling and deploying FederatedLedger"):
                deployment = deploy_ledger(
                    w3,
                    roles.deployer,
                    aggregator=roles.aggregator.address,
                    institutions=dev_consortium(institutions),
                    threshold=threshold,
                    rpc_url=chain.rpc_url,
                    privacy_budget=budget,
                )
        else:
            console.print("reusing the ledger from the saved state")
        deployment.save(path)
        _print_deployment(deployment, path)
        console.print("dev accounts: 0 deployer, 1 aggregator, 2.. institutions (well-known local keys)")
        console.print("[dim]Ctrl-C stops the chain[/]")
        _wait_for_interrupt(chain)
    except _tool_failures() as exc:
        chain.stop()
        fail(str(exc), FAILED)
    finally:
        chain.stop()
    console.print("chain stopped" + (f"; state saved to {state}" if state else ""))


def _reuse_persisted(w3: Any, path: Path, rpc_url: str) -> Deployment | None:
    """The saved deployment, if the restored chain still has its contract."""
    from fedledger.chain.deploy import Deployment

    if not path.exists():
        return None
    try:
        saved = Deployment.load(path)
    except (ValueError, FileNotFoundError):
        return None
    if saved.chain_id != int(w3.eth.chain_id) or not w3.eth.get_code(saved.address):
        return None
    saved.rpc_url = rpc_url
    return saved


def _wait_for_interrupt(chain: Any) -> None:
    """Block until Ctrl-C or SIGTERM.

    Both signals get an explicit handler: a shell starts background jobs with SIGINT ignored, and
    Python then never raises KeyboardInterrupt, so "Ctrl-C stops the chain" would silently not hold.
    """
    stop = {"now": False}

    def _handler(_signum: int, _frame: Any) -> None:
        stop["now"] = True

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop["now"]:
            if not chain.running:
                fail("the local chain exited unexpectedly", FAILED)
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------------------------- deploy


def _parse_institution(text: str) -> tuple[str, str]:
    from eth_utils import is_address, to_checksum_address

    address, sep, sm9_id = text.partition("=")
    if not sep or not sm9_id:
        fail(f"--institution {text!r}: expected ADDRESS=SM9_ID")
    if not is_address(address):
        fail(f"--institution {text!r}: {address!r} is not an Ethereum address")
    return to_checksum_address(address), sm9_id


def _load_key(key_file: Path | None) -> LocalAccount:
    from eth_account import Account

    if key_file is not None:
        try:
            raw = key_file.read_text().strip()
        except OSError as exc:
            fail(f"cannot read --key-file {key_file}: {exc.strerror}")
        source = f"--key-file {key_file}"
    elif os.environ.get(KEY_ENV):
        raw, source = os.environ[KEY_ENV].strip(), f"${KEY_ENV}"
    else:
        fail(f"no deployer key: pass --key-file, set ${KEY_ENV}, or use --dev on a local chain")
    try:
        return Account.from_key(raw)
    except Exception:  # the key itself must never reach the message
        fail(f"{source} does not hold a valid secp256k1 private key (hex)")


@app.command("deploy")
def deploy(
    rpc_url: Annotated[
        str | None, typer.Option("--rpc-url", help="JSON-RPC endpoint of the chain to deploy on (not with --plan).")
    ] = None,
    plan: Annotated[
        Path | None,
        typer.Option("--plan", help="Deploy the consortium plan's ledger from its kits (with --kits)."),
    ] = None,
    kits: Annotated[Path | None, typer.Option("--kits", help="With --plan: the kits folder.")] = None,
    rounds: Annotated[int, typer.Option("--rounds", help="With --plan: rounds the accounts' funds must cover.")] = 10,
    fund: Annotated[
        bool, typer.Option("--fund/--no-fund", help="With --plan on a dev chain: top the kits' accounts up first.")
    ] = True,
    institution: Annotated[
        list[str] | None,
        typer.Option("--institution", "-i", help="A founding institution as ADDRESS=SM9_ID (repeat for each)."),
    ] = None,
    aggregator: Annotated[str | None, typer.Option("--aggregator", help="Aggregator address.")] = None,
    threshold: Annotated[int, typer.Option("--threshold", "-k", help="Approvals required (k).")] = 3,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="Use the well-known dev accounts (local chains only) for every role not given."),
    ] = False,
    dev_institutions: Annotated[
        int, typer.Option("--dev-institutions", help="With --dev: how many dev institutions.")
    ] = 5,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help=f"File holding the deployer's hex private key (or set ${KEY_ENV})."),
    ] = None,
    deployment_file: Annotated[Path | None, typer.Option("--deployment-file", help=DEPLOYMENT_FILE_HELP)] = None,
    dp_epsilon: DpEpsilonOption = None,
    dp_delta: DpDeltaOption = 1e-5,
) -> None:
    """Deploy FederatedLedger on any chain and write the deployment file."""
    budget = _privacy_budget(dp_epsilon, dp_delta)
    from eth_utils import is_address, to_checksum_address

    if plan is not None:
        _deploy_plan(plan, kits, rounds, fund)
        return
    if rpc_url is None:
        fail("give --rpc-url (or --plan consortium.toml --kits kits)")

    from fedledger.chain.deploy import InstitutionSpec, deploy_ledger, dev_consortium
    from fedledger.chain.devaccounts import dev_roles

    specs = [InstitutionSpec(*_parse_institution(text)) for text in institution or []]
    if dev:
        if not 1 <= dev_institutions <= 7:
            fail(f"--dev-institutions must be between 1 and 7, not {dev_institutions}")
        roles = dev_roles(dev_institutions)
        specs = specs or dev_consortium(dev_institutions)
        aggregator = aggregator or roles.aggregator.address
        deployer = roles.deployer if key_file is None and not os.environ.get(KEY_ENV) else _load_key(key_file)
    else:
        deployer = _load_key(key_file)
    if not specs:
        fail("no institutions: pass --institution ADDRESS=SM9_ID (repeatable) or --dev")
    if aggregator is None or not is_address(aggregator):
        fail(f"--aggregator must be an Ethereum address, got {aggregator!r}")
    if not 1 <= threshold <= len(specs):
        fail(f"--threshold must be between 1 and the {len(specs)} institutions, not {threshold}")
    w3 = _connect(rpc_url)
    if dev:
        _require_dev_chain(w3, rpc_url)
    try:
        with console.status("compiling and deploying FederatedLedger"):
            deployment = deploy_ledger(
                w3,
                deployer,
                aggregator=to_checksum_address(aggregator),
                institutions=specs,
                threshold=threshold,
                rpc_url=rpc_url,
                privacy_budget=budget,
            )
    except _tool_failures() as exc:
        fail(str(exc), FAILED)
    path = deployment_file or _default_deployment_file()
    deployment.save(path)
    _print_deployment(deployment, path)


def _deploy_plan(plan_path: Path, kits: Path | None, rounds: int, fund: bool) -> None:
    """``deploy --plan``: the ledger the kits name; funds a dev chain's accounts, else checks their funds."""
    from fedledger.consortium.deployment import deploy_plan
    from fedledger.consortium.kits import password_file
    from fedledger.consortium.plan import load_plan

    if kits is None:
        fail("--plan needs --kits (the folder `fedledger consortium provision` made)")
    with errors_reported(FAILED):
        plan = load_plan(plan_path)
        password = password_file(kits, "deployer").read_text(encoding="utf-8").splitlines()[0]
        with console.status("compiling and deploying FederatedLedger"):
            deployment, needs, funded = deploy_plan(plan, kits, password, rounds, fund)
    if funded:
        console.print("local dev chain: funded every account of the kits", highlight=False)
    for need in needs:
        typer.echo(
            f"  {need.party:<14} {need.address} holds {need.balance / 1e18:.4f} ETH, "
            f"needs about {need.wei / 1e18:.6f} ETH ({need.gas:,} gas for {rounds} rounds)"
        )
    _print_deployment(deployment, kits / "deployment.json")


def _require_dev_chain(w3: Any, rpc_url: str) -> None:
    """--dev hands roles to keys anyone knows: only a local dev chain may get them."""
    from fedledger.chain.devaccounts import DEV_CHAIN_IDS

    chain_id = int(w3.eth.chain_id)
    if chain_id not in DEV_CHAIN_IDS:
        local = " or ".join(str(c) for c in DEV_CHAIN_IDS)
        fail(
            f"--dev uses the well-known dev keys, but {rpc_url} is chain {chain_id}, not a local dev chain "
            f"({local}): pass --key-file, --aggregator and --institution instead"
        )


def _connect(rpc_url: str) -> Any:
    from web3 import HTTPProvider, Web3

    if not rpc_url.startswith(("http://", "https://")):
        fail(f"--rpc-url must be an http(s) URL, got {rpc_url!r}")
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    try:
        w3.eth.chain_id  # noqa: B018 (connectivity probe)
    except Exception as exc:
        fail(f"cannot reach {rpc_url}: {type(exc).__name__}", FAILED)
    return w3


# ---------------------------------------------------------------------------------- membership

ACTIONS = ("add", "remove", "threshold", "aggregator", "privacy-budget")


def _membership_change(
    ledger: Any, action: str, account: str | None, sm9_id: str, threshold: int | None, budget: Any = None
) -> Any:
    """The MembershipChange (or, for privacy-budget, the PrivacyBudgetSetting) a command describes;
    k defaults to the ledger's current k."""
    from eth_utils import is_address

    from fedledger.chain.approvals import MembershipChange

    if action not in ACTIONS:
        fail(f"--action must be one of {', '.join(ACTIONS)}, not {action!r}")
    if action == "privacy-budget":
        if budget is None:
            fail("--action privacy-budget needs --dp-epsilon (and --dp-delta)")
        return budget
    if action != "threshold" and (account is None or not is_address(account)):
        fail(f"--action {action} needs --account with a 0x address")
    if action == "add" and not sm9_id:
        fail("--action add needs --sm9-id (the new institution's SM9 identity)")
    k = threshold if threshold is not None else ledger.threshold()
    if action == "threshold" and threshold is None:
        fail("--action threshold needs --threshold (the new k)")
    if action == "add":
        return MembershipChange.add(str(account), sm9_id, k)
    if action == "remove":
        return MembershipChange.remove(str(account), k)
    if action == "threshold":
        return MembershipChange.set_threshold(k)
    return MembershipChange.set_aggregator(str(account), k)


def _keystore_account(keystore: Path, password_file: Path | None) -> LocalAccount:
    from fedledger.chain.keyfile import KeyFileError, load_eth_key

    try:
        return load_eth_key(keystore, read_password(password_file, f"Ethereum key {keystore}"))
    except KeyFileError as exc:
        fail(str(exc))


def _ledger_of(deployment_file: Path | None) -> Any:
    from fedledger.chain.deploy import Deployment

    try:
        deployment = Deployment.load(deployment_file)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    return deployment.client(_connect(deployment.rpc_url))


ActionOption = Annotated[
    str, typer.Option("--action", help="add | remove | threshold | aggregator | privacy-budget.")
]
AccountOption = Annotated[
    str | None, typer.Option("--account", help="Institution (add/remove) or new aggregator address.")
]
Sm9IdOption = Annotated[str, typer.Option("--sm9-id", help="With add: the new institution's SM9 identity.")]
ThresholdOption = Annotated[
    int | None, typer.Option("--threshold", "-k", help="k after the change (default: the current k).")
]
KeystorePasswordOption = Annotated[
    Path | None, typer.Option("--password-file", help="File whose first line is the keystore password.")
]
DeploymentFileOption = Annotated[Path | None, typer.Option("--deployment-file", help=DEPLOYMENT_FILE_HELP)]
KeystoreOption = Annotated[Path, typer.Option("--keystore", help="Encrypted Ethereum keystore (JSON) to sign with.")]


@app.command("approve-change")
def approve_change(
    action: ActionOption,
    keystore: KeystoreOption,
    account: AccountOption = None,
    sm9_id: Sm9IdOption = "",
    threshold: ThresholdOption = None,
    password_file: KeystorePasswordOption = None,
    deployment_file: DeploymentFileOption = None,
    dp_epsilon: DpEpsilonOption = None,
    dp_delta: DpDeltaOption = 1e-5,
) -> None:
    """An institution's EIP-712 approval of a membership or privacy-budget change (prints it as hex;
    k are needed).

    The approval is bound to this chain, this contract and the ledger's current membership nonce,
    so it cannot be replayed for another change or on another ledger.
    """
    ledger = _ledger_of(deployment_file)
    budget = None if dp_epsilon is None else _privacy_budget(dp_epsilon, dp_delta)
    change = _membership_change(ledger, action, account, sm9_id, threshold, budget)
    approver = _keystore_account(keystore, password_file)
    if action == "privacy-budget":
        typer.echo("0x" + ledger.approve_privacy_budget(approver, change).hex())
        return
    typer.echo("0x" + ledger.approve_membership_change(approver, change).hex())


@app.command("apply-change")
def apply_change(
    action: ActionOption,
    keystore: KeystoreOption,
    approval: Annotated[
        list[str], typer.Option("--approval", help="An approval from `approve-change` (repeat k times).")
    ],
    account: AccountOption = None,
    sm9_id: Sm9IdOption = "",
    threshold: ThresholdOption = None,
    password_file: KeystorePasswordOption = None,
    deployment_file: DeploymentFileOption = None,
    dp_epsilon: DpEpsilonOption = None,
    dp_delta: DpDeltaOption = 1e-5,
) -> None:
    """Send a membership or privacy-budget change with its k approvals (any funded account may send it)."""
    ledger = _ledger_of(deployment_file)
    budget = None if dp_epsilon is None else _privacy_budget(dp_epsilon, dp_delta)
    change = _membership_change(ledger, action, account, sm9_id, threshold, budget)
    try:
        approvals = [bytes.fromhex(a.removeprefix("0x")) for a in approval]
    except ValueError:
        fail("every --approval must be hex")
    sender = _keystore_account(keystore, password_file)
    try:
        if action == "privacy-budget":
            result = ledger.set_privacy_budget(sender, change, approvals)
        else:
            result = ledger.apply_membership_change(sender, change, approvals)
    except _tool_failures() as exc:
        fail(str(exc), FAILED)
    typer.echo(f"{action} change applied in block {result.block_number} (tx {result.tx_hash})")


# ---------------------------------------------------------------------------------- status


def _budget_json(budget: Any) -> dict[str, float] | None:
    return {"epsilon": budget.epsilon, "delta": budget.delta} if budget.is_set else None


@app.command("status")
def status(
    deployment_file: Annotated[Path | None, typer.Option("--deployment-file", help=DEPLOYMENT_FILE_HELP)] = None,
    rpc_url: Annotated[str | None, typer.Option("--rpc-url", help="Override the deployment file's RPC URL.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Show the ledger: membership, k, the current round and the last posted global model."""
    from fedledger.chain.deploy import Deployment

    try:
        deployment = Deployment.load(deployment_file)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    w3 = _connect(rpc_url or deployment.rpc_url)
    if not w3.eth.get_code(deployment.address):
        fail(f"no contract at {deployment.address} on {rpc_url or deployment.rpc_url} (chain restarted?)", FAILED)
    ledger = deployment.client(w3)
    state = ledger.round_state()
    posted = ledger.global_models_posted()
    data: dict[str, Any] = {
        "rpc_url": rpc_url or deployment.rpc_url,
        "chain_id": ledger.chain_id,
        "block": int(w3.eth.block_number),
        "contract": ledger.address,
        "aggregator": ledger.aggregator(),
        "threshold": ledger.threshold(),
        "privacy_budget": _budget_json(ledger.privacy_budget()),
        "institutions": [{"address": i.address, "sm9_id": i.sm9_id, "active": i.active} for i in ledger.institutions()],
        "round": {
            "started": state.started,
            "current": state.round if state.started else None,
            "open": state.open,
            "updates": state.update_count,
        },
        "rounds_posted": len(posted),
        "last_global_model": (
            {"round": posted[-1].round, "cid": posted[-1].cid, "digest": posted[-1].digest.hex()} if posted else None
        ),
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title=f"FederatedLedger {data['contract']} on chain {data['chain_id']} (block {data['block']})")
    table.add_column("field")
    table.add_column("value")
    table.add_row("aggregator", data["aggregator"])
    active = sum(1 for i in data["institutions"] if i["active"])
    table.add_row("k of n", f"{data['threshold']} of {active} active")
    budget = data["privacy_budget"]
    table.add_row("privacy budget", f"epsilon {budget['epsilon']:g}, delta {budget['delta']:g}" if budget else "none")
    for inst in data["institutions"]:
        table.add_row("institution", f"{inst['address']}  {inst['sm9_id']}" + ("" if inst["active"] else " (removed)"))
    if state.started:
        table.add_row("round", f"{state.round} ({'open' if state.open else 'closed'}, {state.update_count} updates)")
    else:
        table.add_row("round", "none opened yet")
    last = data["last_global_model"]
    table.add_row("last global model", f"round {last['round']}: {last['cid']}" if last else "none posted")
    console.print(table)


# ---------------------------------------------------------------------------------- bench


@bench_app.command("chain")
def bench_chain(
    kind: Annotated[str, typer.Option("--kind", help="Local chain to measure on: anvil or hardhat.")] = "anvil",
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
) -> None:
    """Gas used by every ledger operation (realistic calldata), against the issue's targets."""
    from fedledger.chain.bench import measure_gas

    chain_kind = _check_kind(kind)
    try:
        if as_json or not sys.stderr.isatty():
            result = measure_gas(chain_kind)
        else:
            with err_console.status("measuring gas") as spinner:
                result = measure_gas(chain_kind, progress=lambda msg: spinner.update(msg))
    except _tool_failures() as exc:
        fail(str(exc), FAILED)
    emit("chain", result, as_json)
