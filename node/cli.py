"""``fedledger node``: the institution's commands (init, train, submit, sign, status, run)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import (
    BAD_INPUT,
    PasswordFileOption,
    errors_reported,
    fail,
    read_password,
    setup_logging,
    spinner,
)
from fedledger.cli.tls_options import (
    InsecureHttpOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
    open_issued_tls,
)
from fedledger.errors import FedLedgerError

app = typer.Typer(no_args_is_help=True, help="Run an institution's node: keys, training, submission, co-signing.")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The node's config file (or its folder).", show_default=True)
]


def _context(  # type: ignore[no-untyped-def]
    config_path: Path, password_file: Path | None, *, reach_aggregator: bool = False, insecure_http: bool = False
):
    from fedledger.tls.contexts import PLAIN_HTTP_WARNING
    from node.config import load_config
    from node.context import build_context

    if insecure_http:
        typer.echo(PLAIN_HTTP_WARNING, err=True)
    with errors_reported(BAD_INPUT, (FedLedgerError, ValueError, OSError)):
        config, base = load_config(config_path)
        password = read_password(password_file, f"node {config.name}'s keys")
        return build_context(config, base, password, insecure_http=insecure_http, reach_aggregator=reach_aggregator)


@app.command()
def init(
    home: Annotated[Path, typer.Option(help="Folder for the config, keys (0600) and state.")],
    name: Annotated[str, typer.Option(help="Institution name, e.g. hospital-1.")],
    sm9_identity: Annotated[str, typer.Option(help="The institution's SM9 identity (as registered on chain).")],
    width_rate: Annotated[float, typer.Option(help="Sub-model width this node trains: 1, 0.5, 0.25, 0.125...")],
    rpc_url: Annotated[str, typer.Option(help="JSON-RPC URL of the chain.")],
    contract: Annotated[str, typer.Option(help="Address of the FederatedLedger contract.")],
    aggregator_url: Annotated[str, typer.Option(help="Base URL of the aggregator's HTTP API.")],
    sm9_key: Annotated[Path, typer.Option(help="SM9 signing key file issued by the KGC.")],
    share: Annotated[Path, typer.Option(help="Consortium key share file issued by the KGC.")],
    master_public_key: Annotated[Path, typer.Option(help="KGC's SM9 sign master public key (PEM).")],
    threshold_public: Annotated[Path, typer.Option(help="Threshold public data (JSON) from `kgc split`.")],
    consortium: Annotated[Path, typer.Option(help="Consortium roster (JSON): members, addresses, shares.")],
    data_source: Annotated[
        str, typer.Option(help="digits | breast_cancer | DICOM folder (+labels.csv) | MedMNIST .npz")
    ],
    store: Annotated[str, typer.Option(help="Content store: local:DIR or kubo:MULTIADDR.")],
    partitions: Annotated[int, typer.Option(help="Split the source among this many institutions.")] = 1,
    index: Annotated[int, typer.Option(help="This institution's partition (0-based).")] = 0,
    scheme: Annotated[str, typer.Option(help="Partition scheme: iid or dirichlet.")] = "iid",
    alpha: Annotated[float, typer.Option(help="Dirichlet alpha (label skew; smaller = more skewed).")] = 0.5,
    eth_key: Annotated[
        Path | None, typer.Option(help="Existing Ethereum keystore JSON; a new key is made when omitted.")
    ] = None,
    kgc_password_file: Annotated[
        Path | None, typer.Option(help="Password file of the KGC-issued key files (default: same as node's).")
    ] = None,
    password_file: PasswordFileOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config and keys.")] = False,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
) -> None:
    """Write the node's config and keys: KGC files are re-encrypted under the node's own password."""
    from eth_account import Account

    from fedledger.chain.keyfile import load_eth_key, save_eth_key
    from fedledger.protocol.consortium import Consortium, PublicMaterial
    from fedledger.sm9 import SignPrivateKey
    from fedledger.sm9.threshold import KeyShare, Signer, ThresholdPublic
    from fedledger.tls import check_member_certificate
    from node.config import CONFIG_NAME, DataConfig, NodeConfig, save_config

    if (home / CONFIG_NAME).exists() and not force:
        fail(f"{home / CONFIG_NAME} exists: this node is initialised already (--force replaces it)")
    password = read_password(password_file, f"node {name}'s keys", confirm=True)
    kgc_password = read_password(kgc_password_file, "the KGC-issued files") if kgc_password_file else password
    # Read and check everything first, so bad input leaves nothing half-written behind.
    try:
        sm9_private = SignPrivateKey.load(sm9_key, kgc_password)
        share_key = KeyShare.load(share, kgc_password)
        material = PublicMaterial(master_public_key, threshold_public, consortium)
        material.check()
        Signer(share_key, ThresholdPublic.load(threshold_public))  # the share belongs to this split
        account = load_eth_key(eth_key, kgc_password) if eth_key else Account.from_key(secrets.token_bytes(32))
        config = NodeConfig(
            name=name,
            sm9_identity=sm9_identity,
            width_rate=width_rate,
            rpc_url=rpc_url,
            contract=contract,
            aggregator_url=aggregator_url,
            store=store,
            data=DataConfig(source=data_source, partitions=partitions, index=index, scheme=scheme, alpha=alpha),  # type: ignore[arg-type]
        )
        tls = open_issued_tls(tls_ca, tls_cert, tls_key, kgc_password)
        if tls is not None:  # the certificate must name this node's own address
            check_member_certificate(tls.ca, tls.certificate, Consortium.load(consortium).chain_id, account.address)
    except Exception as exc:  # every failure here is bad input: report it plainly
        fail(str(exc))
    keys = home / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    sm9_private.save(keys / "sm9-sign-key.json", password)
    share_key.save(keys / "consortium-share.json", password)
    save_eth_key(keys / "eth-key.json", account, password)
    material.install(keys)
    if tls is not None:
        tls.save(config.tls_files(home), password)
    path = save_config(config, home)
    typer.echo(f"node {name}: config {path}, Ethereum address {account.address}")


@app.command()
def status(config: ConfigOption = Path("node.toml"), password_file: PasswordFileOption = None) -> None:
    """Show the ledger's round state and this node's submissions."""
    ctx = _context(config, password_file)
    state = ctx.ledger.round_state()
    typer.echo(f"node {ctx.name} ({ctx.account.address}), width rate {ctx.width_rate}")
    typer.echo(
        f"ledger {ctx.ledger.address}: round {state.round} {'open' if state.open else 'closed'}, "
        f"{state.update_count} update(s) this round"
    )
    for event in ctx.ledger.updates_submitted(institution=ctx.account.address):
        typer.echo(f"  round {event.round}: {event.cid} ({event.num_samples} samples)")


@app.command()
def train(config: ConfigOption = Path("node.toml"), password_file: PasswordFileOption = None) -> None:
    """Fetch and verify the open round's base model and train the update (not submitted yet)."""
    from node.participant import RecordRefused, train_for_round

    ctx = _context(config, password_file)
    round_index = _open_round(ctx)
    try:
        with spinner(f"round {round_index}: training at width {ctx.width_rate}"):
            trained = train_for_round(ctx, round_index)
    except RecordRefused as exc:
        fail(str(exc))
    typer.echo(f"trained round {round_index}: {trained.path} (SM3 {trained.digest.hex()}, loss {trained.loss:.4f})")


@app.command()
def submit(config: ConfigOption = Path("node.toml"), password_file: PasswordFileOption = None) -> None:
    """Submit this round's update: the one `train` made, or train first if there is none."""
    from node.participant import RecordRefused, train_and_submit

    ctx = _context(config, password_file)
    round_index = _open_round(ctx)
    try:
        with spinner(f"round {round_index}: submitting"):
            done = train_and_submit(ctx, round_index)
    except RecordRefused as exc:
        fail(str(exc))
    typer.echo(f"submitted round {round_index}" if done else f"already submitted for round {round_index}")


def _open_round(ctx) -> int:  # type: ignore[no-untyped-def]
    state = ctx.ledger.round_state()
    if not state.open:
        fail(f"no round is open on ledger {ctx.ledger.address}")
    return int(state.round)


@app.command()
def sign(
    config: ConfigOption = Path("node.toml"),
    password_file: PasswordFileOption = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 300.0,
    insecure_http: InsecureHttpOption = False,
) -> None:
    """Take part in the open round's signing session until the aggregator has what it needs."""
    import time

    from node.http_client import aggregator_client
    from node.participant import RecordRefused, SessionParticipant

    ctx = _context(config, password_file, reach_aggregator=True, insecure_http=insecure_http)
    state = ctx.ledger.round_state()
    if not state.open:
        fail("no round is open")
    deadline = time.monotonic() + timeout
    with aggregator_client(ctx.aggregator_tls, ctx.http_timeout_seconds) as http:
        participant = SessionParticipant(ctx, http)
        while time.monotonic() < deadline:
            try:
                phase = participant.step(state.round)
            except RecordRefused as exc:
                fail(f"refusing to sign: {exc}")
            if phase in ("approve", "ready") or not ctx.ledger.round_state().open:
                typer.echo(f"round {state.round}: signed and approved")
                return
            time.sleep(ctx.poll_interval)
    fail("signing session did not finish in time")


@app.command()
def run(
    config: ConfigOption = Path("node.toml"),
    password_file: PasswordFileOption = None,
    rounds: Annotated[int | None, typer.Option(help="Stop after this many rounds are posted.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    insecure_http: InsecureHttpOption = False,
) -> None:
    """Follow rounds by itself: verify, train, submit and co-sign, until --rounds are posted."""
    from node.participant import run_node

    setup_logging(verbose)
    ctx = _context(config, password_file, reach_aggregator=True, insecure_http=insecure_http)
    posted = run_node(ctx, rounds)
    typer.echo(f"node {ctx.name}: {posted} round(s) posted")
