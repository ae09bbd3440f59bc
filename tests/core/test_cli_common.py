"""The one failure style every command shares: one line on stderr, a stated exit code, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fedledger.cli.common import BAD_INPUT, FAILED, guarded, read_password
from fedledger.errors import FedLedgerError

runner = CliRunner()


class _SomeProjectError(FedLedgerError):
    pass


def _app(action: typer.models.CommandFunctionType) -> typer.Typer:
    app = typer.Typer()
    app.command()(action)
    return app


def test_a_project_error_is_one_line_on_stderr_with_the_exit_code() -> None:
    def boom() -> None:
        raise _SomeProjectError("the ledger said no\n  because: nonce moved on")

    def command() -> None:
        guarded(boom, FAILED)
        typer.echo("not reached")

    result = runner.invoke(_app(command), [])
    assert result.exit_code == FAILED
    assert result.stderr == "error: the ledger said no because: nonce moved on\n"
    assert result.stdout == "" and "Traceback" not in result.output


def test_a_missing_file_is_bad_input_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"

    def command() -> None:
        guarded(missing.read_bytes)

    result = runner.invoke(_app(command), [])
    assert result.exit_code == BAD_INPUT
    assert result.stderr.startswith("error: ") and str(missing) in result.stderr
    assert result.stderr.count("\n") == 1


def test_other_exceptions_are_bugs_and_not_swallowed() -> None:
    def command() -> None:
        guarded(lambda: 1 // 0)

    result = runner.invoke(_app(command), [])
    assert isinstance(result.exception, ZeroDivisionError)


def test_password_file_first_line_and_empty_password_refused(tmp_path: Path) -> None:
    good, empty = tmp_path / "good", tmp_path / "empty"
    good.write_text("s3cret\nignored\n")
    empty.write_text("\n")

    def command(path: Path) -> None:
        typer.echo(len(read_password(path, "a key")))

    app = _app(command)
    assert runner.invoke(app, [str(good)]).stdout == "6\n"
    refused = runner.invoke(app, [str(empty)])
    assert refused.exit_code == BAD_INPUT and refused.stderr == "error: empty password for a key\n"


@pytest.mark.parametrize("module", ["node.cli", "aggregator.cli", "demo.cli", "fedledger.cli.common"])
def test_a_role_cli_imported_first_still_builds_the_whole_root_app(module: str) -> None:
    code = f"import {module}; from fedledger.cli import app; print(sorted(g.name for g in app.registered_groups))"
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert "'node'" in result.stdout and "'aggregator'" in result.stdout and "'chain'" in result.stdout


def test_version_answers_without_a_command() -> None:
    from fedledger import __version__
    from fedledger.cli import app

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"{__version__}\n"
