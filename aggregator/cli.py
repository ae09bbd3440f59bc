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
    from aggregator.driver import RoundFailed, build_context, run_aggregator
    from aggregator.http_api import SessionBoard, create_app
    from fedledger.chain.keyfile import KeyFileError

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    board = SessionBoard()
    try:
        cfg, base = load_config(config)
        password = read_password(password_file, "the aggregator's Ethereum key")
        ctx = build_context(cfg, base, password, board)
    except (AggregatorConfigError, KeyFileError, ValueError, OSError) as exc:
        fail(str(exc))
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
