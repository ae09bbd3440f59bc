"""What every fedledger command shares: one failure style, passwords, input and output paths,
consoles, logging.

A failure is one line on stderr, ``error: <what went wrong>``, never a traceback. Exit codes are
the same in every group: 0 success, ``FAILED`` (1) when the operation or a check failed,
``BAD_INPUT`` (2, click's code for usage errors) when the input is wrong; a command may document
one more (``audit summary``: 3, chain unreachable). Output paths are ``--out`` in every command.
Passwords never come from the command line.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.status import Status

from fedledger.errors import FedLedgerError

FAILED = 1
BAD_INPUT = 2
PASSWORD_ENV = "FEDLEDGER_KEY_PASSWORD"  # noqa: S105 - the variable name, not a password

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    typer.echo(f"error: {one_line}", err=True)
    raise typer.Exit(code)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename or ''}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)


@contextlib.contextmanager
def errors_reported(
    code: int = BAD_INPUT, kinds: tuple[type[BaseException], ...] = (FedLedgerError, OSError)
) -> Iterator[None]:
    """Inside the block, the project's errors (and file errors) end the command with one line."""
    try:
        yield
    except kinds as exc:
        fail(_describe(exc), code)


def guarded(action: Callable[[], T], code: int = BAD_INPUT) -> T:
    """Run ``action``; a ``FedLedgerError`` or file error ends the command with one line."""
    with errors_reported(code):
        return action()


def read_password(password_file: Path | None, purpose: str, confirm: bool = False) -> str:
    """The key password from --password-file, $FEDLEDGER_KEY_PASSWORD or a prompt (never argv)."""
    if password_file is not None:
        try:
            text = password_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read password file {password_file}: {exc}")
        password = text.splitlines()[0] if text.splitlines() else ""
    elif os.environ.get(PASSWORD_ENV):
        password = os.environ[PASSWORD_ENV]
    elif sys.stdin.isatty():
        password = typer.prompt(f"Password for {purpose}", hide_input=True, confirmation_prompt=confirm)
    else:
        fail(f"no password for {purpose}: set {PASSWORD_ENV} or pass --password-file")
    if not password:
        fail(f"empty password for {purpose}")
    return password


PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help=f"File whose first line is the key password (else ${PASSWORD_ENV}, or a prompt).",
    ),
]


OldOutputOption = Annotated[Path | None, typer.Option("--output", hidden=True, help="Old spelling of --out.")]


def output_path(out: Path | None, old_output: Path | None) -> Path:
    """Where a command writes: ``--out`` (every command's spelling) or the old ``--output``."""
    if out is not None and old_output is not None and out != old_output:
        fail(f"--out {out} and --output {old_output} disagree: give --out only")
    chosen = out if out is not None else old_output
    if chosen is None:
        fail("missing option --out (where to write the output)")
    return chosen


def read_input(path: Path, what: str) -> bytes:
    """The bytes of ``path`` ('-' reads standard input); an unreadable file is bad input."""
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror}")


ROLE_LOGGERS = ("node", "aggregator", "fedledger")
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="Log debugging detail too.")]
LogJsonOption = Annotated[bool, typer.Option("--log-json", help="Log JSON lines instead of text.")]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        moment = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        level = record.levelname.lower()
        body = {"time": moment, "level": level, "logger": record.name, "message": record.getMessage()}
        return json.dumps(body, ensure_ascii=False)


def limit_torch_threads() -> None:
    """A long-running role trains or aggregates with torch's thread count from ``FEDLEDGER_TORCH_THREADS``
    (default 1): torch's own default, one busy thread per core, starves the other parties of a shared
    machine (five node processes on two cores took minutes per round)."""
    from fedledger.fl.training import configure_threads

    configure_threads()


def setup_logging(verbose: bool = False, log_json: bool = False) -> None:
    """The roles' own loggers (node, aggregator, fedledger) say one readable line per step at INFO;
    libraries stay at WARNING so their chatter does not bury the steps; -v lowers both to DEBUG;
    ``log_json`` writes one JSON object per line instead."""
    handler = logging.StreamHandler(sys.stderr)
    if log_json:
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(name)s: %(message)s", "%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    for name in ROLE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def spinner(text: str) -> Status:
    """A status line on stderr while something slow runs (stdout stays clean for results)."""
    return err_console.status(text)
