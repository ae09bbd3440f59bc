"""A node started from its kit says at once, in one line, what stops it: a ledger not deployed,
data that does not fit the task, an account that is no longer a member. `remove-member` takes the
member off the ledger and re-issues the split and roster without it. Real Anvil, real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedledger.chain.localchain import LocalChain
from tests.consortium.test_consortium_e2e import institution

FEDLEDGER = [sys.executable, "-m", "fedledger.cli"]


def fedledger(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FEDLEDGER, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, anvil_chain: LocalChain) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("consortium")
    plan = (
        f'name = "starts"\nk = 2\n[chain]\nrpc_url = "{anvil_chain.rpc_url}"\nchain_id = 31337\n'
        f'[store]\nspec = "local:{root / "store"}"\n[aggregator]\nurl = "https://127.0.0.1:9"\n'
        '[task]\ninput_shape = [1, 8, 8]\nlabels = ["0","1","2","3","4","5","6","7","8","9"]\n'
        'model = { family = "cnn", hidden = [8] }\n'
    )
    digits = '{ kind = "builtin", path = "digits", partitions = 3, index = %d }'
    plan += institution("hospital-1", 1.0, digits % 0)
    plan += institution("hospital-2", 0.5, '{ kind = "dicom" }')  # its folder is given at start with --data
    plan += institution("hospital-3", 0.5, digits % 2)
    (root / "consortium.toml").write_text(plan, encoding="utf-8")
    done = fedledger(["consortium", "provision", "consortium.toml", "--out", "kits"], root)
    assert done.returncode == 0, done.stderr
    yield root


def test_a_node_before_the_ledger_is_deployed_says_so_and_exits(site: Path) -> None:
    started = time.monotonic()
    done = fedledger(["node", "start", "hospital-1", "--password-file", "hospital-1.password"], site / "kits")
    assert "no contract at 0x" in one_line_error(done) and "chain deploy --plan" in done.stderr
    assert time.monotonic() - started < 240


def test_data_that_does_not_fit_stops_the_node_before_it_touches_the_chain(site: Path) -> None:
    folder = site / "tiny"
    folder.mkdir()
    from pydicom.data import get_testdata_file

    ct = get_testdata_file("CT_small.dcm")
    assert ct is not None
    rows = []
    for i in range(8):
        (folder / f"s{i}.dcm").write_bytes(Path(ct).read_bytes())
        rows.append(f"s{i}.dcm,{i % 2}")
    (folder / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    done = fedledger(
        ["node", "start", "hospital-2", "--password-file", "hospital-2.password", "--data", str(folder)], site / "kits"
    )
    message = one_line_error(done)
    assert "8 samples are too few: the task needs at least 20" in message, message


def test_unfunded_accounts_are_listed_with_their_needs_and_nothing_is_deployed(site: Path) -> None:
    done = fedledger(["chain", "deploy", "--plan", "consortium.toml", "--kits", "kits", "--no-fund"], site)
    message = one_line_error(done)
    assert "unfunded accounts on chain 31337: hospital-1 0x" in message and "deployer 0x" in message, message
    assert "ETH (" in message and "fund them and run this again" in message
    assert not (site / "kits" / "deployment.json").exists()


def test_a_removed_member_is_told_at_once_and_the_rest_get_a_new_split(site: Path) -> None:
    kits = site / "kits"
    deployed = fedledger(["chain", "deploy", "--plan", "consortium.toml", "--kits", "kits"], site)
    assert deployed.returncode == 0, deployed.stderr
    before = (kits / "hospital-1" / "keys" / "threshold-public.json").read_text()
    removed = fedledger(
        ["consortium", "remove-member", "consortium.toml", "--kits", "kits", "--name", "hospital-3"], site
    )
    assert removed.returncode == 0, removed.stderr
    roster = json.loads((kits / "consortium.json").read_text())
    assert [m["name"] for m in roster["members"]] == ["hospital-1", "hospital-2"]
    assert (kits / "hospital-1" / "keys" / "threshold-public.json").read_text() != before
    assert json.loads((kits / "aggregator" / "keys" / "consortium.json").read_text()) == roster

    done = fedledger(["node", "start", "hospital-3", "--password-file", "hospital-3.password"], kits)
    message = one_line_error(done)
    assert "hospital-3 (0x" in message and "is not an active member of ledger" in message, message

    status = fedledger(["consortium", "status", "--kits", "kits", "--json"], site)
    assert status.returncode == 0, status.stderr
    members = {m["name"]: m for m in json.loads(status.stdout)["members"]}
    assert members["hospital-3"]["member"] is False and members["hospital-1"]["member"] is True
    assert json.loads(status.stdout)["aggregator_state"].startswith("unreachable")
