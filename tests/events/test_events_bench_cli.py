"""``fedledger bench scale`` refuses bad sizes with one line, before it starts any chain."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from fedledger.cli import app


@pytest.mark.parametrize(("sizes", "message"), [("5,x", "must be integers"), ("5,1", "at least 2")])
def test_bad_sizes_are_refused_in_one_line(sizes: str, message: str) -> None:
    result = CliRunner().invoke(app, ["bench", "scale", "--sizes", sizes, "--json"])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
