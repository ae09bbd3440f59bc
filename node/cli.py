"""``fedledger node``: the institution's commands (init, train, submit, sign, status, run)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from fedledger.cli.common import (
    BAD_INPUT,
    LogJsonOption,
    PasswordFileOption,
    VerboseOption,
    errors_reported,
    fail,
    limit_torch_threads,
    read_password,
    setup_logging,
    spinner,
)
from fedledger.cli.consortium import UnsealedOption
from fedledger.cli.role_init import (
    ChosenAccount,
    EthKeyPasswordFileOption,
    NewEthKeyOption,
    SelectionOption,
    ServerMomentumOption,
    choose_eth_account,
    consortium_terms,
    require_writable_home,
    transport_password,
    write_home,
)
from fedledger.cli.tls_options import (
    InsecureHttpOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
    open_issued_tls,
    warn_plain_http,
)
from fedledger.errors import FedLedgerError

if TYPE_CHECKING:
    from fedledger.protocol.consortium import PublicMaterial
    from fedledger.sm9 import SignPrivateKey
    from fedledger.sm9.threshold import KeyShare
    from node.config import NodeConfig

T = TypeVar("T")

app = typer.Typer(no_args_is_help=True, help="Run an institution's node: keys, training, submission, co-signing.")

ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="The node's config file (or its folder).", show_default=True)
]
LocalDPEpsilonOption = Annotated[
    float | None,
    typer.Option(
        help="Train by local DP-SGD: this hospital's record-level epsilon over --local-dp-rounds rounds "
        "(the node refuses a round that would spend more). Default: none (no local DP)."
    ),
]
LocalDPRoundsOption = Annotated[
    int | None, typer.Option(help="Rounds --local-dp-epsilon is planned over (config default: 50).")
]


def _context(  # type: ignore[no-untyped-def]
    config_path: Path,
    password_file: Path | None,
    *,
    require_member: bool = True,
    reach_aggregator: bool = False,
    insecure_http: bool = False,
):
    """The node's context once its chain answers, its contract is the ledger and (unless only looking)
    its key is this institution's registered address: a node never waits on a ledger that ignores it."""
    from fedledger.chain.preflight import probe_ledger, registered_institution
    from node.config import load_config
    from node.context import build_context

    warn_plain_http(insecure_http)
    with errors_reported(BAD_INPUT, (FedLedgerError, ValueError, OSError)):
        config, base = load_config(config_path)
        ledger = probe_ledger(config.rpc_url, config.contract)  # a wrong URL or contract is one line
        password = read_password(password_file, f"node {config.name}'s keys")
        ctx = build_context(config, base, password, insecure_http=insecure_http, reach_aggregator=reach_aggregator)
        if require_member:
            registered_institution(ledger, ctx.account.address, config.sm9_identity)
        return ctx


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
    selection: SelectionOption = "rolling",
    server_momentum: ServerMomentumOption = None,
    eth_key: Annotated[
        Path | None,
        typer.Option(help="Ethereum keystore JSON (registered for this institution); else the home's key, else new."),
    ] = None,
    eth_key_password_file: EthKeyPasswordFileOption = None,
    new_eth_key: NewEthKeyOption = False,
    sm9_key_password_file: Annotated[
        Path | None, typer.Option(help="Transport password of --sm9-key (default: <sm9-key>.password).")
    ] = None,
    share_password_file: Annotated[
        Path | None, typer.Option(help="Transport password of --share (default: <share>.password).")
    ] = None,
    encrypt_key: Annotated[
        Path | None,
        typer.Option(
            help="SM9 decryption key from `kgc extract-encrypt` (a new ML-KEM key is made), "
            "or an existing reader-keys.json: lets the node open sealed models."
        ),
    ] = None,
    encrypt_key_password_file: Annotated[
        Path | None, typer.Option(help="Transport password of --encrypt-key (default: <encrypt-key>.password).")
    ] = None,
    kgc_password_file: Annotated[
        Path | None,
        typer.Option(help="One transport password for the KGC files without a <file>.password beside them."),
    ] = None,
    password_file: PasswordFileOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing config (keeps its Ethereum key).")
    ] = False,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_key_password_file: Annotated[
        Path | None, typer.Option(help="Transport password of --tls-key (default: <tls-key>.password).")
    ] = None,
    local_dp_epsilon: LocalDPEpsilonOption = None,
    local_dp_delta: Annotated[
        float | None,
        typer.Option(help="Local DP-SGD: delta (below 1 / training records; default 1e-5). Needs --local-dp-epsilon."),
    ] = None,
    local_dp_clip: Annotated[
        float | None,
        typer.Option(help="Local DP-SGD: L2 bound on each record's gradient (default 1). Needs --local-dp-epsilon."),
    ] = None,
    local_dp_rounds: Annotated[
        int | None,
        typer.Option(help="Local DP-SGD: rounds the epsilon is planned over (default 50). Needs --local-dp-epsilon."),
    ] = None,
) -> None:
    """Check and write the node's config and keys: KGC files are re-encrypted under the node's own password.

    Nothing is written until all is checked: the chain, the contract (the ledger),
    the SM9 key, share and Ethereum key (this institution's) and the data.
    """
    from fedledger.fl import load_dataset
    from fedledger.protocol.consortium import Consortium, PublicMaterial
    from fedledger.protocol.readers import READER_CARD_FILE, install_reader_keys, reader_keys_from_kgc
    from fedledger.sm9 import SignPrivateKey
    from fedledger.sm9.threshold import KeyShare
    from fedledger.tls import check_member_certificate
    from node.config import CONFIG_NAME, DataConfig, NodeConfig, save_config
    from node.local_budget import requested_policy

    with errors_reported(BAD_INPUT):  # before any password is asked for
        local_dp = requested_policy(local_dp_epsilon, local_dp_delta, local_dp_clip, local_dp_rounds)
    if (home / CONFIG_NAME).exists() and not force:
        fail(f"{home / CONFIG_NAME} exists: this node is initialised already (--force replaces it)")
    require_writable_home(home)
    password = read_password(password_file, f"node {name}'s keys", confirm=True)
    sm9_transport = transport_password(sm9_key, "--sm9-key", sm9_key_password_file, kgc_password_file)
    share_transport = transport_password(share, "--share", share_password_file, kgc_password_file)
    tls_transport = (
        transport_password(tls_key, "--tls-key", tls_key_password_file, kgc_password_file) if tls_key else ""
    )
    encrypt_transport = (
        transport_password(encrypt_key, "--encrypt-key", encrypt_key_password_file, kgc_password_file)
        if encrypt_key
        else ""
    )
    with errors_reported(BAD_INPUT, (FedLedgerError, ValueError, OSError)):
        config = NodeConfig(
            name=name,
            sm9_identity=sm9_identity,
            width_rate=width_rate,
            rpc_url=rpc_url,
            contract=contract,
            aggregator_url=aggregator_url,
            store=store,
            data=DataConfig(source=data_source, partitions=partitions, index=index, scheme=scheme, alpha=alpha),  # type: ignore[arg-type]
            **({f"local_dp_{name}": value for name, value in asdict(local_dp).items()} if local_dp else {}),
            **consortium_terms(selection, server_momentum),
        )
        if index >= partitions:
            fail(f"--index {index} is not one of the {partitions} partitions (0..{partitions - 1}): fix --index")
        load_dataset(data_source)
        sm9_private = _open_issued(lambda: SignPrivateKey.load(sm9_key, sm9_transport), "--sm9-key")
        share_key = _open_issued(lambda: KeyShare.load(share, share_transport), "--share")
        reader_keys = reader_keys_from_kgc(encrypt_key, encrypt_transport, sm9_identity) if encrypt_key else None
        material = PublicMaterial(master_public_key, threshold_public, consortium)
        material.check()
        chosen = choose_eth_account(home, eth_key, eth_key_password_file, password_file, password, new_eth_key)
        warning = _check_enrolment(config, material, sm9_private, share_key, chosen, new_eth_key)
        tls = open_issued_tls(tls_ca, tls_cert, tls_key, tls_transport)
        if tls is not None:  # the certificate must name this node's own address
            chain_id = Consortium.load(consortium).chain_id
            check_member_certificate(tls.ca, tls.certificate, chain_id, chosen.account.address)

    def save_secrets(keys: Path) -> None:
        sm9_private.save(keys / "sm9-sign-key.json", password)
        share_key.save(keys / "consortium-share.json", password)
        if reader_keys is not None:
            install_reader_keys(reader_keys, keys, password)

    write_home(home, password, chosen, material, config=config, save_config=save_config, tls=tls,
               label=f"node {name}", warning=warning, save_secrets=save_secrets)  # fmt: skip
    if reader_keys is not None:
        typer.echo(f"reader card {home / 'keys' / READER_CARD_FILE}: register it with `fedledger kgc register-card`")


def _open_issued(load: Callable[[], T], option: str) -> T:
    """Open a KGC-issued file with its transport password; a wrong one says which password was tried."""
    from fedledger.sm9 import SM9KeyError

    try:
        return load()
    except SM9KeyError as exc:
        fail(f"{exc} (tried the KGC's transport password for {option}): pass {option}-password-file")


def _check_enrolment(
    config: NodeConfig,
    material: PublicMaterial,
    sm9_private: SignPrivateKey,
    share_key: KeyShare,
    chosen: ChosenAccount,
    new_eth_key: bool,
) -> str:
    """Everything that ties the node's files to its ledger and identity; a warning for a new key."""
    from fedledger.chain.preflight import probe_ledger, registered_institution
    from fedledger.protocol.consortium import Consortium
    from fedledger.protocol.enrolment import check_public_material, check_share, check_sign_key, roster_member
    from fedledger.sm9 import SignMasterPublicKey
    from fedledger.sm9.threshold import ThresholdPublic

    public = ThresholdPublic.load(material.threshold_public)
    roster = Consortium.load(material.roster)
    ledger = probe_ledger(config.rpc_url, config.contract)
    check_public_material(public, roster, ledger.chain_id, config.contract)
    member = roster_member(roster, config.sm9_identity)
    check_sign_key(sm9_private, config.sm9_identity, SignMasterPublicKey.load(material.master_public_key))
    check_share(share_key, public, member)
    address = chosen.account.address
    if chosen.origin != "new":
        registered_institution(ledger, address, config.sm9_identity)
        return ""
    owner = ledger.sm9_id_owner(config.sm9_identity)
    if owner is not None and not new_eth_key:
        fail(
            f"{config.sm9_identity} is registered on ledger {ledger.address} as {owner}: pass that key with "
            "--eth-key (or --new-eth-key to replace it; the consortium must then register the new address)"
        )
    return (
        f"the new Ethereum key {address} is not registered on ledger {ledger.address}: the consortium must add it "
        f"(`fedledger chain approve-change --action add --account {address} --sm9-id {config.sm9_identity}`)"
    )


@app.command()
def status(config: ConfigOption = Path("node.toml"), password_file: PasswordFileOption = None) -> None:
    """Show the ledger's round state and this node's submissions."""
    ctx = _context(config, password_file, require_member=False)
    state = ctx.ledger.round_state()
    typer.echo(f"node {ctx.name} ({ctx.account.address}), width rate {ctx.width_rate}")
    typer.echo(
        f"ledger {ctx.ledger.address}: round {state.round} {'open' if state.open else 'closed'}, "
        f"{state.update_count} update(s) this round"
    )
    for event in ctx.ledger.updates_submitted(institution=ctx.account.address):
        typer.echo(f"  round {event.round}: {event.cid} ({event.num_samples} samples)")
    from node.local_budget import local_dp_status

    with errors_reported(BAD_INPUT):
        local_dp = local_dp_status(ctx.state_dir)
    if local_dp is not None:
        typer.echo(local_dp)


@app.command()
def train(config: ConfigOption = Path("node.toml"), password_file: PasswordFileOption = None) -> None:
    """Fetch and verify the open round's base model and train the update (not submitted yet)."""
    from fedledger.dp.errors import DPError
    from node.participant import RecordRefused, train_for_round

    ctx = _context(config, password_file)
    round_index = _open_round(ctx)
    try:
        with spinner(f"round {round_index}: training at width {ctx.width_rate}"):
            trained = train_for_round(ctx, round_index)
    except (RecordRefused, DPError) as exc:  # DPError: the node's local DP-SGD budget refuses the round
        fail(str(exc))
    typer.echo(f"trained round {round_index}: {trained.path} (SM3 {trained.digest.hex()}, loss {trained.loss:.4f})")


@app.command()
def submit(config: ConfigOption = Path("node.toml"), password_file: PasswordFileOption = None) -> None:
    """Submit this round's update: the one `train` made, or train first if there is none."""
    from fedledger.dp.errors import DPError
    from node.participant import RecordRefused, train_and_submit

    ctx = _context(config, password_file)
    round_index = _open_round(ctx)
    try:
        with spinner(f"round {round_index}: submitting"):
            done = train_and_submit(ctx, round_index)
    except (RecordRefused, DPError) as exc:  # DPError: the node's local DP-SGD budget refuses the round
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

    import httpx

    from node.http_client import aggregator_client
    from node.participant import AggregatorUnavailable, RecordRefused, SessionParticipant
    from node.session_view import SessionViewError

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
            except (SessionViewError, AggregatorUnavailable, httpx.HTTPError):  # this poll only: look again
                time.sleep(ctx.poll_interval)
                continue
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
    verbose: VerboseOption = False,
    log_json: LogJsonOption = False,
    insecure_http: InsecureHttpOption = False,
    local_dp_epsilon: LocalDPEpsilonOption = None,
    local_dp_rounds: LocalDPRoundsOption = None,
) -> None:
    """Follow rounds by itself: verify, train, submit and co-sign, until --rounds are posted.

    --local-dp-epsilon / --local-dp-rounds override node.toml's local_dp_epsilon / local_dp_rounds."""
    from node.local_budget import override_policy
    from node.participant import run_node

    setup_logging(verbose, log_json)
    limit_torch_threads()
    ctx = _context(config, password_file, reach_aggregator=True, insecure_http=insecure_http)
    with errors_reported(BAD_INPUT):
        ctx.local_dp = override_policy(ctx.local_dp, local_dp_epsilon, local_dp_rounds)
    with errors_reported():  # NodeMisconfigured: wrong contract or not a member, said at once
        posted = run_node(ctx, rounds)
    typer.echo(f"node {ctx.name}: {posted} round(s) posted")


@app.command()
def start(
    kit: Annotated[Path, typer.Argument(help="This institution's kit folder (from `fedledger consortium provision`).")],
    password_file: PasswordFileOption = None,
    data: Annotated[str | None, typer.Option("--data", help="This site's data, if the plan gives no path.")] = None,
    rounds: Annotated[int | None, typer.Option(help="Stop after this many rounds are posted.")] = None,
    verbose: VerboseOption = False,
    log_json: LogJsonOption = False,
    insecure_http: InsecureHttpOption = False,
    unsealed: UnsealedOption = False,
) -> None:
    """Start from a kit: check the data against the task, the reader keys, the chain and membership, then
    follow rounds."""
    from node.kit_start import start_node

    setup_logging(verbose, log_json)
    limit_torch_threads()
    warn_plain_http(insecure_http)
    password = read_password(password_file, f"the kit {kit}")
    with errors_reported(BAD_INPUT):
        posted = start_node(kit, password, data, rounds, insecure_http, unsealed)
    typer.echo(f"node {kit.name}: {posted} round(s) posted")
