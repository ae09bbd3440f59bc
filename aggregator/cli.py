"""``fedledger aggregator``: run the consortium's rounds and its signing sessions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fedledger.cli import role_init
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
)
from fedledger.cli.consortium import UnsealedOption
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
    import uvicorn

    from aggregator.config import AggregatorConfig
    from fedledger.protocol.consortium import PublicMaterial

DpEpsilonOption = Annotated[
    float | None,
    typer.Option(
        "--dp-epsilon",
        min=0.001,
        help="Central DP: the epsilon all --rounds rounds spend together (the noise is calibrated per round). "
        "Overrides the config's dp_epsilon; the ledger's privacy budget must allow it.",
    ),
]
DpClipOption = Annotated[
    float | None,
    typer.Option("--dp-clip", min=1e-9, help="Central DP: L2 bound on each update (config: dp_clip, 1)."),
]
DpDeltaOption = Annotated[
    float | None,
    typer.Option("--dp-delta", min=1e-12, max=0.5, help="Central DP: delta (config: dp_delta, 1e-5)."),
]

app = typer.Typer(no_args_is_help=True, help="Run the aggregator: open rounds, align sub-models, coordinate signing.")


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The aggregator's config file (or folder).")] = Path(
        "aggregator.toml"
    ),
    rounds: Annotated[int, typer.Option(help="Stop once this many rounds are posted.")] = 3,
    password_file: PasswordFileOption = None,
    verbose: VerboseOption = False,
    log_json: LogJsonOption = False,
    insecure_http: InsecureHttpOption = False,
    dp_epsilon: DpEpsilonOption = None,
    dp_clip: DpClipOption = None,
    dp_delta: DpDeltaOption = None,
    secure_aggregation: Annotated[
        bool,
        typer.Option(
            "--secure-aggregation",
            help="Run rounds with secure aggregation (config: secure_aggregation); the nodes' configs must agree.",
        ),
    ] = False,
) -> None:
    """Drive rounds until --rounds are posted; serves the signing-session API (mutual TLS) meanwhile.

    Safe to kill and restart at any point: it resumes from the ledger's events and the store.
    """
    from aggregator.config import load_config
    from aggregator.context import build_context
    from aggregator.driver import run_aggregator
    from aggregator.http_api import SessionBoard
    from aggregator.http_server import api_server
    from fedledger.chain.preflight import probe_ledger

    setup_logging(verbose, log_json)
    limit_torch_threads()
    warn_plain_http(insecure_http)
    board = SessionBoard()
    with errors_reported(BAD_INPUT, (FedLedgerError, ValueError, OSError)):
        cfg, base = load_config(config)
        overrides = {"dp_epsilon": dp_epsilon, "dp_clip": dp_clip, "dp_delta": dp_delta}
        cfg = cfg.model_validate(cfg.model_dump() | {k: v for k, v in overrides.items() if v is not None})
        if secure_aggregation:
            cfg = cfg.model_copy(update={"secure_aggregation": True})
        probe_ledger(cfg.rpc_url, cfg.contract)  # a wrong URL or contract is one line, not a traceback
        password = read_password(password_file, "the aggregator's Ethereum key")
        ctx = build_context(cfg, base, password, board)
        server = api_server(board, cfg, base, password, ctx.consortium.chain_id, insecure_http)
    posted = _serving(server, lambda: run_aggregator(ctx, rounds))
    typer.echo(f"aggregator: {posted} round(s) posted on {ctx.ledger.address}")


def _serving(server: uvicorn.Server, drive: Callable[[], int]) -> int:
    """Serve the signing-session API while ``drive`` runs the rounds; a failed round ends in one line."""
    from aggregator.http_server import serve_in_background

    thread = serve_in_background(server)
    try:
        return drive()
    except FedLedgerError as exc:  # a misconfiguration no retry heals (RoundFailed is one too)
        fail(str(exc))
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@app.command()
def init(
    home: Annotated[Path, typer.Option(help="Folder for the config, the key (0600) and state.")],
    rpc_url: Annotated[str, typer.Option(help="JSON-RPC URL of the chain.")],
    contract: Annotated[str, typer.Option(help="Address of the FederatedLedger contract.")],
    store: Annotated[str, typer.Option(help="Content store: local:DIR or kubo:MULTIADDR.")],
    master_public_key: Annotated[Path, typer.Option(help="KGC's SM9 sign master public key (PEM).")],
    threshold_public: Annotated[Path, typer.Option(help="Threshold public data (JSON) from `kgc split`.")],
    consortium: Annotated[Path, typer.Option(help="Consortium roster (JSON): members, addresses, shares.")],
    dataset: Annotated[
        str, typer.Option(help="Data set whose shape fixes the model: digits, breast_cancer, a folder, an .npz.")
    ] = "digits",
    eth_key: Annotated[
        Path | None,
        typer.Option(help="Ethereum keystore holding the ledger's aggregator role; else the home's key."),
    ] = None,
    eth_key_password_file: role_init.EthKeyPasswordFileOption = None,
    new_eth_key: role_init.NewEthKeyOption = False,
    port: Annotated[int, typer.Option(help="Port of the signing-session HTTP API.")] = 8700,
    selection: role_init.SelectionOption = "rolling",
    server_momentum: role_init.ServerMomentumOption = None,
    encrypt_key: Annotated[
        Path | None,
        typer.Option(help="SM9 decryption key from `kgc extract-encrypt`, or an existing reader-keys.json."),
    ] = None,
    password_file: PasswordFileOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config (keeps its key).")] = False,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    tls_key_password_file: Annotated[
        Path | None, typer.Option(help="Transport password of --tls-key (default: <tls-key>.password).")
    ] = None,
    encrypt_key_password_file: Annotated[
        Path | None,
        typer.Option(help="Transport password of --encrypt-key (default: <encrypt-key>.password)."),
    ] = None,
) -> None:
    """Check and write the aggregator's config and key (the key must hold the contract's aggregator role).

    Everything is checked before anything is written: the chain answers, the contract is the ledger,
    the public files are this ledger's, the key is the ledger's aggregator, the data set opens.
    """
    from aggregator.config import CONFIG_NAME, AggregatorConfig, save_config
    from fedledger.fl import default_spec, load_dataset
    from fedledger.protocol.consortium import PublicMaterial
    from fedledger.protocol.readers import READER_CARD_FILE, install_reader_keys, reader_keys_from_kgc

    if (home / CONFIG_NAME).exists() and not force:
        fail(f"{home / CONFIG_NAME} exists: the aggregator is initialised already (--force replaces it)")
    role_init.require_writable_home(home)
    password = read_password(password_file, "the aggregator's Ethereum key", confirm=True)
    tls_transport = role_init.transport_password(tls_key, "--tls-key", tls_key_password_file) if tls_key else ""
    encrypt_transport = (
        role_init.transport_password(encrypt_key, "--encrypt-key", encrypt_key_password_file) if encrypt_key else ""
    )
    with errors_reported(BAD_INPUT, (FedLedgerError, ValueError, OSError)):
        data = load_dataset(dataset)
        reader_keys = reader_keys_from_kgc(encrypt_key, encrypt_transport) if encrypt_key else None
        config = AggregatorConfig(
            rpc_url=rpc_url,
            contract=contract,
            store=store,
            port=port,
            model=default_spec(data.input_shape, data.num_classes).to_dict(),
            **role_init.consortium_terms(selection, server_momentum),
        )
        material = PublicMaterial(master_public_key, threshold_public, consortium)
        material.check()
        chosen = role_init.choose_eth_account(
            home, eth_key, eth_key_password_file, password_file, password, new_eth_key
        )
        warning = _check_ledger(config, material, chosen, new_eth_key)
        tls = open_issued_tls(tls_ca, tls_cert, tls_key, tls_transport)

    def save_secrets(keys: Path) -> None:
        if reader_keys is not None:
            install_reader_keys(reader_keys, keys, password)

    role_init.write_home(home, password, chosen, material, config=config, save_config=save_config, tls=tls,
               label="aggregator", warning=warning, save_secrets=save_secrets)  # fmt: skip
    if reader_keys is not None:
        typer.echo(f"reader card {home / 'keys' / READER_CARD_FILE}: register it with `fedledger kgc register-card`")


@app.command()
def start(
    kit: Annotated[Path, typer.Argument(help="The aggregator's kit folder (from `fedledger consortium provision`).")],
    rounds: Annotated[int, typer.Option(help="Stop once this many rounds are posted.")] = 3,
    password_file: PasswordFileOption = None,
    verbose: VerboseOption = False,
    log_json: LogJsonOption = False,
    insecure_http: InsecureHttpOption = False,
    unsealed: UnsealedOption = False,
) -> None:
    """Start from the kit: build the plan's model, check the reader keys, the chain and the role, serve the
    API, drive rounds."""
    from aggregator.http_api import SessionBoard
    from aggregator.http_server import api_server
    from aggregator.kit_start import aggregator_config, start_aggregator
    from fedledger.consortium.kits import load_kit

    setup_logging(verbose, log_json)
    limit_torch_threads()
    warn_plain_http(insecure_http)
    password = read_password(password_file, f"the kit {kit}")
    board = SessionBoard()
    with errors_reported(BAD_INPUT):
        loaded = load_kit(kit).require("aggregator")
        cfg = aggregator_config(loaded)
        server = api_server(board, cfg, loaded.folder, password, loaded.chain_id, insecure_http)
    posted = _serving(server, lambda: start_aggregator(kit, password, rounds, board, unsealed))
    typer.echo(f"aggregator: {posted} round(s) posted")


def _check_ledger(
    config: AggregatorConfig, material: PublicMaterial, chosen: role_init.ChosenAccount, new_eth_key: bool
) -> str:
    """The chain answers, the contract is the ledger, the public files and the key are its; a warning
    for a new key (asked for by name), which the consortium must still make the aggregator."""
    from fedledger.chain.preflight import check_aggregator_role, probe_ledger
    from fedledger.protocol.consortium import Consortium
    from fedledger.protocol.enrolment import check_public_material
    from fedledger.sm9.threshold import ThresholdPublic

    ledger = probe_ledger(config.rpc_url, config.contract)
    public = ThresholdPublic.load(material.threshold_public)
    check_public_material(public, Consortium.load(material.roster), ledger.chain_id, config.contract)
    if chosen.origin != "new":
        check_aggregator_role(ledger, chosen.account.address)
        return ""
    if not new_eth_key:
        fail(
            f"no --eth-key: the aggregator of ledger {ledger.address} is {ledger.aggregator()}; pass its key with "
            "--eth-key (or --new-eth-key to make one the consortium then sets as aggregator)"
        )
    return (
        f"the new Ethereum key {chosen.account.address} is not the aggregator of ledger {ledger.address}: the "
        f"consortium must set it (`fedledger chain approve-change --action aggregator --account "
        f"{chosen.account.address}`)"
    )
