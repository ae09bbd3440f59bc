"""The README's "Run a real consortium", command for command, every party its own process.

A plan file (3 institutions, k = 2; hospital-3 brings a DICOM folder built from pydicom's test
files), `consortium provision`, `chain deploy --plan`, the aggregator and the nodes started from
their kits, 2 rounds; then `consortium add-member` for a 4th institution and `remove-member` of
hospital-2, and 1 more round; then `audit summary` must verify every entry, keyless and in member
mode. The kits run sealed: every model file in the store is ciphertext (no block holds a safetensors
header), and the removed member's kit cannot open the global model written after its removal while
a member's can. Only the CLI runs the consortium: no Python API, no file copied from another run
(Python only reads the ledger and the store's blocks to check). The chain is the suite's real Anvil.
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


def audit_summary(cwd: Path, reader: str | None = None) -> dict:
    """`audit summary --json` over the kits' deployment, the plan's store and the KGC's public key;
    with ``reader``, in member mode with that party's reader keys (plaintext digests checked too)."""
    args = ["audit", "summary", "--deployment", "kits/deployment.json", "--store", f"local:{cwd / 'store'}"]
    args += ["--master-public-key", "kits/kgc/keys/sign-master-public-key.pem", "--json"]
    if reader is not None:
        args += ["--reader-keys", f"kits/{reader}/keys/reader-keys.json", "--password-file", f"kits/{reader}.password"]
    return json.loads(run(args, cwd))


SAFETENSORS_MARKS = (b'"dtype"', b'"data_offsets"', b'"__metadata__"', b'"F32"')


def assert_store_sealed(store: Path, kits: Path) -> None:
    """No block of the store holds a safetensors header; every model CID on the ledger is an envelope."""
    from fedledger.chain.deploy import Deployment
    from fedledger.envelope.header import MAGIC
    from fedledger.store import open_store

    plain = [p.read_bytes() for p in kits.glob("*/state/round-*/*.safetensors")]
    assert plain and all(all(m in p for m in SAFETENSORS_MARKS) for p in plain)  # control: the marks are real
    blocks = [p.read_bytes() for p in (store / "blocks").rglob("*.data")]
    leaked = [m for m in SAFETENSORS_MARKS if any(m in block for block in blocks)]
    assert blocks and leaked == [], f"plaintext safetensors headers in the store: {leaked}"
    ledger = Deployment.load(kits / "deployment.json").client()
    cids = [e.cid for e in ledger.updates_submitted()] + [g.cid for g in ledger.global_models_posted()]
    cids += [o.base_cid for o in ledger.rounds_opened()]
    content = open_store(f"local:{store}")
    assert len(cids) == 9 + 3 + 3 and all(content.read_bytes(cid).startswith(MAGIC) for cid in cids)


def assert_removed_member_cannot_open_later_models(cwd: Path, kits: Path) -> None:
    """hospital-2, removed before round 2, cannot open round 2's global model with its kit's reader
    keys (one line naming whom it is sealed to); hospital-1 can (the member-mode audit opened it too)."""
    from fedledger.chain.deploy import Deployment

    after = Deployment.load(kits / "deployment.json").client().global_models_posted(round=2)[0].cid

    def get(cid: str, party: str) -> subprocess.CompletedProcess[str]:
        args = ["store", "get", cid, "-o", f"{party}-{cid[:12]}.bin", "--store", f"local:{cwd / 'store'}"]
        args += ["--key-file", f"kits/{party}/keys/reader-keys.json", "--password-file", f"kits/{party}.password"]
        return subprocess.run([*FEDLEDGER, *args], cwd=cwd, capture_output=True, text=True, timeout=300)

    refused = get(after, "hospital-2")
    assert refused.returncode != 0 and not (cwd / f"hospital-2-{after[:12]}.bin").exists()
    assert "not for inst:hospital-2" in refused.stderr and "inst:hospital-4 (key id" in refused.stderr, refused.stderr
    assert "inst:hospital-2 (key id" not in refused.stderr  # the file names no entry for it at all
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert get(after, "hospital-1").returncode == 0 and (cwd / f"hospital-1-{after[:12]}.bin").stat().st_size > 0


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


@pytest.mark.timeout(1800)  # about 3 min on an idle machine; a shared, loaded one runs it 5x slower
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
    removed = run(
        ["consortium", "remove-member", "consortium.toml", "--kits", "kits", "--name", "hospital-2"], tmp_path
    )
    assert "hospital-2" in removed and "members now: hospital-1, hospital-3, hospital-4" in removed

    run_parties(kits, ["hospital-1", "hospital-3", "hospital-4"], 3, logs)
    assert "submitted round 2" in (logs / "hospital-4-3.log").read_text()

    metrics = run(["consortium", "metrics", "--kits", "kits", "--plot", "metrics.png"], tmp_path)
    for round_index in range(3):
        assert f"round {round_index}: federated accuracy " in metrics, metrics
    assert "hospital-4" in metrics and (tmp_path / "metrics.png").read_bytes()[:4] == b"\x89PNG"

    # member mode: every entry verified, and every model file opened with hospital-1's kit keys and
    # its plaintext SM3 held to the ledger's (hospital-1 was a reader of every round)
    summary = audit_summary(tmp_path, reader="hospital-1")
    assert summary["all_verified"], summary["failures"]
    assert summary["global_models"]["verified"] == 3
    assert summary["updates"]["verified"] == 3 + 3 + 3

    assert_store_sealed(tmp_path / "store", kits)
    assert_removed_member_cannot_open_later_models(tmp_path, kits)


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLEDGER_TORCH_THREADS", "1")
