"""``fedledger aggregator``: run the consortium's rounds and its signing sessions."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import typer

from fedledger.cli.sm9 import PasswordFileOption, fail, read_password

app = typer.Typer(no_args_is_help=True, help="Run the aggregator: open rounds, align sub-models, coordinate signing.")


@app.command()
def run(
    config: Annotated[Path, typer.Option("--config", "-c", help="The aggregator's config file (or folder).")] = Path(
        "aggregator.toml"
    ),
    rounds: Annotated[int, typer.Option(help="Stop once this many rounds are posted.")] = 3,
    password_file: PasswordFileOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log each step.")] = False,
) -> None:
    """Drive rounds until --rounds are posted; serves the signing-session HTTP API meanwhile.

    Safe to kill and restart at any point: it resumes from the ledger's events and the store.
    """
    import uvicorn

    from aggregator.config import AggregatorConfigError, load_config
    from aggregator.driver import AggregatorContext, RoundFailed, run_aggregator
    from aggregator.http_api import SessionBoard, create_app
    from fedledger.chain.client import LedgerClient
    from fedledger.chain.compiler import compile_ledger
    from fedledger.fl import ModelSpec, ValidationPolicy
    from fedledger.protocol.consortium import Consortium
    from fedledger.sm9 import SignMasterPublicKey
    from fedledger.sm9.threshold import ThresholdPublic
    from fedledger.store import open_store
    from node.context import KeyFileError, load_eth_key

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    try:
        cfg, base = load_config(config)
        password = read_password(password_file, "the aggregator's Ethereum key")
        board = SessionBoard()
        ctx = AggregatorContext(
            account=load_eth_key(base / cfg.eth_key_file, password),
            ledger=LedgerClient.connect(cfg.rpc_url, cfg.contract, compile_ledger().abi),
            store=open_store(cfg.store),
            spec=ModelSpec.from_dict(cfg.model),
            master_public_key=SignMasterPublicKey.load(base / cfg.master_public_key_file),
            threshold_public=ThresholdPublic.load(base / cfg.threshold_public_file),
            consortium=Consortium.load(base / cfg.consortium_file),
            state_dir=base / cfg.state_dir,
            board=board,
            init_seed=cfg.init_seed,
            min_updates=cfg.min_updates,
            round_deadline=cfg.round_deadline_seconds,
            session_timeout=cfg.session_timeout_seconds,
            policy=ValidationPolicy(cfg.max_update_norm, cfg.norm_policy),
            poll_interval=cfg.poll_interval,
        )
    except (AggregatorConfigError, KeyFileError, ValueError, OSError) as exc:
        fail(str(exc))
    ctx.state_dir.mkdir(parents=True, exist_ok=True)
    server = uvicorn.Server(uvicorn.Config(create_app(board), host=cfg.host, port=cfg.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        posted = run_aggregator(ctx, rounds)
    except RoundFailed as exc:
        fail(str(exc))
    finally:
        server.should_exit = True
        thread.join(timeout=5)
    typer.echo(f"aggregator: {posted} round(s) posted on {ctx.ledger.address}")
