"""Local DP-SGD through the real commands, on the suite's Anvil: `fedledger node init --local-dp-*` writes
node.toml, bad values (and the planning options without an epsilon) are one line, exit 2, nothing
written; `node run`'s overrides are checked the same way; both commands' help explains the options."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from demo.in_process import InProcessConsortium
from fedledger.chain.localchain import LocalChain
from fedledger.cli import app
from node.config import CONFIG_NAME, load_config
from node.context import local_dp_policy
from node.local_budget import LocalDPPolicy
from tests.node.test_node_cli import _init_args

runner = CliRunner()
BAD_INPUT = 2


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory, anvil_chain: LocalChain) -> Iterator[InProcessConsortium]:
    yield InProcessConsortium.create(tmp_path_factory.mktemp("local-dp-cli"), anvil_chain)


def _init(c: InProcessConsortium, home: Path, *local_dp: str) -> tuple[int, str]:
    password = home.parent / "new-password"
    password.write_text("a new node password\n")
    result = runner.invoke(app, [*_init_args(c, home, password), *local_dp])
    return result.exit_code, result.stderr


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_node_init_writes_the_local_dp_settings_into_node_toml(consortium: InProcessConsortium, tmp_path: Path) -> None:
    home = tmp_path / "node"
    options = ("--local-dp-epsilon", "4", "--local-dp-delta", "1e-6", "--local-dp-clip", "0.5",
               "--local-dp-rounds", "20")  # fmt: skip
    code, stderr = _init(consortium, home, *options)
    assert code == 0, stderr
    text = (home / CONFIG_NAME).read_text(encoding="utf-8")
    for line in ("local_dp_epsilon = 4.0", "local_dp_delta = 1e-06", "local_dp_clip = 0.5", "local_dp_rounds = 20"):
        assert line in text, text
    config, _ = load_config(home)
    assert local_dp_policy(config) == LocalDPPolicy(4.0, 1e-6, 0.5, 20)

    plain = tmp_path / "plain"
    code, stderr = _init(consortium, plain)
    assert code == 0, stderr
    assert "local_dp_epsilon" not in (plain / CONFIG_NAME).read_text(encoding="utf-8")
    assert local_dp_policy(load_config(plain)[0]) is None  # no --local-dp-epsilon: plain training


BAD_INIT = {
    "negative epsilon": (["--local-dp-epsilon", "-1"], "epsilon"),
    "zero epsilon": (["--local-dp-epsilon", "0"], "epsilon"),
    "infinite epsilon": (["--local-dp-epsilon", "inf"], "epsilon"),
    "nan epsilon": (["--local-dp-epsilon", "nan"], "epsilon"),
    "delta 1": (["--local-dp-epsilon", "8", "--local-dp-delta", "1"], "delta"),
    "delta above 1": (["--local-dp-epsilon", "8", "--local-dp-delta", "1.5"], "delta"),
    "delta 0": (["--local-dp-epsilon", "8", "--local-dp-delta", "0"], "delta"),
    "clip 0": (["--local-dp-epsilon", "8", "--local-dp-clip", "0"], "clip"),
    "negative clip": (["--local-dp-epsilon", "8", "--local-dp-clip", "-0.5"], "clip"),
    "infinite clip": (["--local-dp-epsilon", "8", "--local-dp-clip", "inf"], "clip"),
    "rounds 0": (["--local-dp-epsilon", "8", "--local-dp-rounds", "0"], "round"),
    "negative rounds": (["--local-dp-epsilon", "8", "--local-dp-rounds", "-3"], "round"),
    "rounds without epsilon": (["--local-dp-rounds", "20"], "--local-dp-epsilon"),
    "delta without epsilon": (["--local-dp-delta", "1e-6"], "--local-dp-epsilon"),
    "clip without epsilon": (["--local-dp-clip", "0.5"], "--local-dp-epsilon"),
}


@pytest.mark.parametrize("options,named", list(BAD_INIT.values()), ids=list(BAD_INIT))
def test_node_init_refuses_bad_local_dp_options_in_one_line_and_writes_nothing(
    consortium: InProcessConsortium, tmp_path: Path, options: list[str], named: str
) -> None:
    home = tmp_path / "node"
    code, stderr = _init(consortium, home, *options)
    assert code == BAD_INPUT, stderr
    line = _one_line_error(stderr)
    assert named in line, line
    assert "validation error" not in line and "errors.pydantic.dev" not in line, line  # said for a person
    assert not home.exists(), sorted(p.name for p in home.rglob("*"))


def _fedledger(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The installed console script, run from this checkout (PYTHONPATH), wide enough not to wrap help."""
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"}
    return subprocess.run(["fedledger", *args], capture_output=True, text=True, timeout=timeout, env=env)


BAD_RUN = {
    "rounds without epsilon": (["--local-dp-rounds", "5"], "needs --local-dp-epsilon"),
    "zero epsilon": (["--local-dp-epsilon", "0"], "epsilon"),
    "negative epsilon": (["--local-dp-epsilon", "-2"], "epsilon"),
    "zero rounds": (["--local-dp-epsilon", "8", "--local-dp-rounds", "0"], "round"),
}


@pytest.mark.parametrize("options,named", list(BAD_RUN.values()), ids=list(BAD_RUN))
def test_node_run_refuses_bad_local_dp_overrides_in_one_line(
    consortium: InProcessConsortium, options: list[str], named: str
) -> None:
    """A node without local DP in node.toml, run with a bad override: refused before it follows any round
    (never run with a silently replaced value)."""
    home = consortium.layout.node_dirs[1]
    state = sorted(p.relative_to(home) for p in (home / "state").rglob("*"))
    run = _fedledger("node", "run", "-c", str(home), "--password-file", str(home / "password"), "--rounds", "1",
                     *options, timeout=90)  # fmt: skip
    assert run.returncode == BAD_INPUT, run.stdout + run.stderr
    line = _one_line_error(run.stderr)
    assert named in line, line
    assert sorted(p.relative_to(home) for p in (home / "state").rglob("*")) == state


def _normalised(text: str) -> str:
    """Help text with rich's box characters and line breaks flattened to single spaces."""
    return " ".join(text.replace("│", " ").split())


def test_node_init_and_run_help_explain_the_local_dp_options() -> None:
    init = _fedledger("node", "init", "--help")
    assert init.returncode == 0, init.stderr
    text = _normalised(init.stdout)
    for option, says in (
        ("--local-dp-epsilon", "record-level epsilon"),
        ("--local-dp-delta", "below 1 / training records"),
        ("--local-dp-clip", "L2 bound on each record's gradient"),
        ("--local-dp-rounds", "rounds the epsilon is planned over"),
    ):
        assert option in text and says in text, (option, says)
    assert text.count("Needs --local-dp-epsilon") == 3  # the planning options say they mean nothing alone

    run = _fedledger("node", "run", "--help")
    assert run.returncode == 0, run.stderr
    text = _normalised(run.stdout)
    assert "--local-dp-epsilon" in text and "--local-dp-rounds" in text
    assert "override node.toml's local_dp_epsilon / local_dp_rounds" in text
    assert "refuses a round that would spend more" in text
    assert "config default: 50" in text
