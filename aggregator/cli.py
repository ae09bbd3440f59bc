"""``fedledger aggregator``: run the consortium's rounds and its signing sessions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.common import BAD_INPUT, PasswordFileOption, errors_reported, fail, read_password, setup_logging
from fedledger.cli.tls_options import (
    InsecureHttpOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
    open_issued_tls,
)
from fedledger.errors import FedLedgerError

app = typer.Typer(no_args_is_help=True, help="Run the aggregator: open rounds, align sub-models, coordinate signing.")


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The aggregator's config file (or folder).")] = Path(
        "aggregator.toml"
    ),
    rounds: Annotated[int, typer.Option(help="Stop once this many rounds are posted.")] = 3,
    password_file: PasswordFileOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
    insecure_http: InsecureHttpOption = False,
) -> None:
    """Drive rounds until --rounds are posted; serves the signing-session API (mutual TLS) meanwhile.

    Safe to kill and restart at any point: it resumes from the ledger's events and the store.
    """
    from aggregator.config import load_config
    from aggregator.context import build_context
    from aggregator.driver import RoundFailed, run_aggregator
    from aggregator.http_api import SessionBoard
    from aggregator.http_server import api_server, serve_in_background
    from fedledger.tls.contexts import PLAIN_HTTP_WARNING

    setup_logging(verbose)
    if insecure_http:
        typer.echo(PLAIN_HTTP_WARNING, err=True)
    board = SessionBoard()
    with errors_reported(BAD_INPUT, (FedLedgerError, ValueError, OSError)):
        cfg, base = load_config(config)
        password = read_password(password_file, "the aggregator's Ethereum key")
        ctx = build_context(cfg, base, password, board)
        server = api_server(board, cfg, base, password, ctx.consortium.chain_id, insecure_http)
    thread = serve_in_background(server)
    try:
        posted = run_aggregator(ctx, rounds)
    except RoundFailed as exc:
        fail(str(exc))
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    typer.echo(f"aggregator: {posted} round(s) posted on {ctx.ledger.address}")


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
        Path | None, typer.Option(help="Existing Ethereum keystore of the aggregator role; else a new key.")
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the signing-session HTTP API.")] = 8700,
    password_file: PasswordFileOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config and key.")] = False,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    kgc_password_file: Annotated[
        Path | None, typer.Option(help="Password file of the KGC-issued TLS key (default: same as the aggregator's).")
    ] = None,
) -> None:
    """Write the aggregator's config and keys (its Ethereum key must be the contract's aggregator role)."""
    import secrets

    from eth_account import Account

    from aggregator.config import CONFIG_NAME, AggregatorConfig, save_config
    from fedledger.chain.keyfile import load_eth_key, save_eth_key
    from fedledger.fl import DatasetError, default_spec, load_dataset
    from fedledger.protocol.consortium import PublicMaterial
    from fedledger.sm9 import SM9Error

    if (home / CONFIG_NAME).exists() and not force:
        fail(f"{home / CONFIG_NAME} exists: the aggregator is initialised already (--force replaces it)")
    password = read_password(password_file, "the aggregator's Ethereum key", confirm=True)
    kgc_password = read_password(kgc_password_file, "the KGC-issued files") if kgc_password_file else password
    # Read and check everything first, so bad input leaves nothing half-written behind.
    try:
        data = load_dataset(dataset)
        material = PublicMaterial(master_public_key, threshold_public, consortium)
        material.check()
        account = load_eth_key(eth_key, password) if eth_key else Account.from_key(secrets.token_bytes(32))
        config = AggregatorConfig(
            rpc_url=rpc_url,
            contract=contract,
            store=store,
            port=port,
            model=default_spec(data.input_shape, data.num_classes).to_dict(),
        )
        tls = open_issued_tls(tls_ca, tls_cert, tls_key, kgc_password)
    except (FedLedgerError, DatasetError, SM9Error, ValueError, OSError) as exc:
        fail(str(exc))
    keys = home / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    save_eth_key(keys / "eth-key.json", account, password)
    material.install(keys)
    if tls is not None:
        tls.save(config.tls_files(home), password)
    path = save_config(config, home)
    typer.echo(f"aggregator: config {path}, Ethereum address {account.address}")
