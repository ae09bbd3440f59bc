"""The README's "Run a real consortium", command for command, every party its own process.

A plan file (3 institutions, k = 2; hospital-3 brings a DICOM folder built from pydicom's test
files), `consortium provision`, `chain deploy --plan`, the aggregator and the nodes started from
their kits, 2 rounds; then `consortium add-member` for a 4th institution and 1 more round with it;
then `audit summary` must verify every entry. Only the CLI is used: no Python API, no file copied
from another run. The chain is the suite's real Anvil.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedledger.chain.localchain import LocalChain

FEDLEDGER = [sys.executable, "-m", "fedledger.cli"]
TIMEOUT = 900.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dicom_folder(folder: Path) -> int:
    """A DICOM site's data: pydicom's bundled test images that carry pixels, and a labels.csv."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_files

    folder.mkdir(parents=True)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(get_testdata_files("*.dcm")):
            try:
                pydicom.dcmread(path).pixel_array  # noqa: B018 - only files whose pixels decode here
            except Exception:
                continue
            shutil.copyfile(path, folder / Path(path).name)
            rows.append(f"{Path(path).name},{len(rows) % 10}")
    (folder / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return len(rows)


def institution(name: str, width: float, data: str) -> str:
    return f'\n[[institutions]]\nname = "{name}"\nwidth_rate = {width}\ncontact = "ml@{name}.example"\ndata = {data}\n'


def plan_text(rpc_url: str, store: Path, port: int, dicom: Path) -> str:
    return (
        f'name = "e2e"\nk = 2\n\n[chain]\nrpc_url = "{rpc_url}"\nchain_id = 31337\n\n'
        f'[store]\nspec = "local:{store}"\n\n[aggregator]\nurl = "https://127.0.0.1:{port}"\n\n'
        '[task]\nname = "8x8 slices"\ninput_shape = [1, 8, 8]\nlabels = ["0","1","2","3","4","5","6","7","8","9"]\n'
        'min_samples = 20\nmodel = { family = "cnn", hidden = [16, 32] }\n\n'
        "[training]\nepochs = 1\n\n[deadlines]\nround_seconds = 240\n"
        + institution("hospital-1", 1.0, '{ kind = "builtin", path = "digits", partitions = 4, index = 0 }')
        + institution("hospital-2", 0.5, '{ kind = "builtin", path = "digits", partitions = 4, index = 1 }')
        + institution("hospital-3", 0.5, f'{{ kind = "dicom", path = "{dicom}" }}')
    )


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run([*FEDLEDGER, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"fedledger {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def audit_summary(cwd: Path) -> dict:
    """`audit summary --json` over the kits' deployment, the plan's store and the KGC's public key."""
    args = ["audit", "summary", "--deployment", "kits/deployment.json", "--store", f"local:{cwd / 'store'}"]
    args += ["--master-public-key", "kits/kgc/keys/sign-master-public-key.pem", "--json"]
    return json.loads(run(args, cwd))


def run_parties(kits: Path, institutions: list[str], rounds: int, logs: Path) -> None:
    """Start the aggregator and every node from its kit, as the README says; wait until all exit."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "FEDLEDGER_TORCH_THREADS": "1"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    commands = {"aggregator": ["aggregator", "start", "kits/aggregator", "--password-file", "kits/aggregator.password"]}
    for name in institutions:
        commands[name] = ["node", "start", f"kits/{name}", "--password-file", f"kits/{name}.password"]
    try:
        for name, command in commands.items():
            log = open(logs / f"{name}-{rounds}.log", "wb")  # noqa: SIM115 - closed with the process
            procs[name] = subprocess.Popen(
                [*FEDLEDGER, *command, "--rounds", str(rounds)],
                cwd=kits.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + TIMEOUT
        while any(p.poll() is None for p in procs.values()):
            failed = [n for n, p in procs.items() if p.poll() not in (None, 0)]
            assert not failed, f"{failed} failed: " + (logs / f"{failed[0]}-{rounds}.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the federation did not finish in time"
            time.sleep(1.0)
        failed = [n for n, p in procs.items() if p.returncode != 0]
        assert not failed, f"{failed} failed: " + (logs / f"{failed[0]}-{rounds}.log").read_text()[-3000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def test_run_a_real_consortium_from_a_plan(anvil_chain: LocalChain, tmp_path: Path) -> None:
    dicom = tmp_path / "ct-slices"
    assert dicom_folder(dicom) >= 30
    plan = tmp_path / "consortium.toml"
    plan.write_text(plan_text(anvil_chain.rpc_url, tmp_path / "store", _free_port(), dicom), encoding="utf-8")
    logs = tmp_path / "logs"
    logs.mkdir()

    provisioned = run(["consortium", "provision", "consortium.toml", "--out", "kits"], tmp_path)
    assert "ledger address" in provisioned
    kits = tmp_path / "kits"
    for party in ("hospital-1", "hospital-2", "hospital-3", "aggregator", "kgc", "deployer"):
        assert (kits / party / "README").is_file()
        assert (kits / f"{party}.password").stat().st_mode & 0o777 == 0o600
    run(["chain", "deploy", "--plan", "consortium.toml", "--kits", "kits"], tmp_path)

    run_parties(kits, ["hospital-1", "hospital-2", "hospital-3"], 2, logs)
    hospital_3 = (logs / "hospital-3-2.log").read_text()
    assert "fits task" in hospital_3 and "submitted round 1" in hospital_3
    status = run(["consortium", "status", "--kits", "kits"], tmp_path)
    assert "2 round(s) posted; round 1 closed" in status and status.count(" yes ") == 3

    with plan.open("a", encoding="utf-8") as fh:
        fh.write(institution("hospital-4", 0.25, '{ kind = "builtin", path = "digits", partitions = 4, index = 2 }'))
    added = run(["consortium", "add-member", "consortium.toml", "--kits", "kits", "--name", "hospital-4"], tmp_path)
    assert "hospital-4" in added and (kits / "hospital-4" / "README").is_file()

    run_parties(kits, ["hospital-1", "hospital-2", "hospital-3", "hospital-4"], 3, logs)
    assert "submitted round 2" in (logs / "hospital-4-3.log").read_text()

    metrics = run(["consortium", "metrics", "--kits", "kits", "--plot", "metrics.png"], tmp_path)
    for round_index in range(3):
        assert f"round {round_index}: federated accuracy " in metrics, metrics
    assert "hospital-4" in metrics and (tmp_path / "metrics.png").read_bytes()[:4] == b"\x89PNG"

    summary = audit_summary(tmp_path)
    assert summary["all_verified"], summary["failures"]
    assert summary["global_models"]["verified"] == 3
    assert summary["updates"]["verified"] == 3 + 3 + 4


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLEDGER_TORCH_THREADS", "1")
