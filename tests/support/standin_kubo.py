"""A stand-in for Kubo's RPC API, used by the store tests (Kubo itself cannot be installed here)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


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
