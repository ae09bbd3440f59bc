"""The Kubo backend: the same ContentStore interface over a Kubo daemon's RPC API (ipfshttpclient).

Adding goes through ``/api/v0/add`` with Kubo's chunking parameters spelled out (size-262144,
balanced, sha2-256, the CID version and raw-leaves), so a daemon configured with other import
defaults still yields the CIDs the embedded store gives. While the bytes are uploaded, the same
DAG is computed locally; a daemon that answers with another CID is reported, not trusted.
Reading fetches block by block (``/api/v0/block/get``) and verifies every block, exactly like the
embedded store: ``cat`` would hand over bytes that nothing checks.

Transport failures (refused connection, timeouts on idempotent calls) are retried a few times
with a short back-off, then reported as BackendUnavailableError naming the API address.
"""

from __future__ import annotations

import io
import time
import urllib.parse
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from fedledger.store.base import ContentStore
from fedledger.store.builder import CHUNK_SIZE, DagBuilder, ProgressCallback, Source, iter_chunks, open_source
from fedledger.store.cid import CID, as_cid
from fedledger.store.errors import (
    BackendUnavailableError,
    BlockNotFoundError,
    ContentMismatchError,
    StoreError,
)

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001/http"
_T = TypeVar("_T")


def to_multiaddr(address: str) -> str:
    """Accept a multiaddr (/ip4/127.0.0.1/tcp/5001) or a URL (http://127.0.0.1:5001)."""
    address = address.strip()
    if address.startswith("/"):
        return address
    url = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    if url.scheme not in ("http", "https") or not url.hostname:
        raise StoreError(f"not a Kubo RPC address: {address!r} (use /ip4/HOST/tcp/PORT or http://HOST:PORT)")
    host = url.hostname
    port = url.port or (443 if url.scheme == "https" else 5001)
    if host.replace(".", "").isdigit():
        proto = "ip4"
    elif ":" in host:
        proto = "ip6"
    else:
        proto = "dns"
    return f"/{proto}/{host}/tcp/{port}/{url.scheme}"


class KuboStore(ContentStore):
    """Content store backed by a Kubo daemon reachable over its RPC API."""

    def __init__(
        self,
        address: str = DEFAULT_API,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        retry_delay: float = 0.5,
    ) -> None:
        import ipfshttpclient  # imported here: only Kubo users pay for it

        self.address = to_multiaddr(address)
        self.location = f"kubo:{self.address}"
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self._errors = ipfshttpclient.exceptions
        # ipfshttpclient 0.8.0a2 passes a parameter urllib3 2 deprecates, on every request.
        warnings.filterwarnings("ignore", message="The 'strict' parameter", category=FutureWarning)
        try:
            # Client() instead of connect(): connect() asks the daemon for its version at once and
            # warns that every current Kubo is "unsupported"; we check reachability on first use.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._client = ipfshttpclient.Client(self.address, timeout=timeout)
        except self._errors.AddressError as exc:
            raise StoreError(f"not a Kubo RPC address: {address!r} ({exc})") from exc

    def __repr__(self) -> str:
        return f"KuboStore({self.address!r})"

    def close(self) -> None:
        self._client.close()

    # -- transport ---------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], _T], *, retry_timeouts: bool = True, retries: int | None = None) -> _T:
        """Run one RPC call with retries; map transport errors to BackendUnavailableError."""
        errors = self._errors
        max_retries = self.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                return fn()
            except errors.TimeoutError as exc:
                if not retry_timeouts or attempt >= max_retries:
                    raise BackendUnavailableError(
                        f"Kubo RPC API at {self.address} did not answer {what} within {self.timeout}s"
                    ) from exc
            except (errors.ConnectionError, errors.ProtocolError) as exc:
                if attempt >= max_retries:
                    raise BackendUnavailableError(
                        f"Kubo RPC API at {self.address} is unreachable ({what}): {_short(exc)}. "
                        "Is the daemon running (`ipfs daemon`) and is the address right?"
                    ) from exc
            except errors.ErrorResponse as exc:
                raise _map_error_response(what, exc) from exc
            except errors.StatusError as exc:
                raise BackendUnavailableError(f"Kubo RPC API at {self.address}: {what} failed: {exc}") from exc
            attempt += 1
            time.sleep(self.retry_delay * attempt)

    def version(self) -> str:
        """The daemon's version string (also a cheap reachability check)."""
        info: Any = self._call("version", lambda: self._client.version())
        return str(info["Version"])

    # -- blocks ------------------------------------------------------------------------------

    def _read_block(self, cid: CID) -> bytes:
        try:
            data: Any = self._call(f"block/get {cid}", lambda: self._client.block.get(str(cid)), retry_timeouts=False)
        except BackendUnavailableError as exc:
            if "did not answer" in str(exc):  # Kubo searches the network for missing blocks
                raise BlockNotFoundError(str(cid), f"{self.location} did not find it within {self.timeout}s") from exc
            raise
        return bytes(data)

    def has_block(self, cid: str | CID) -> bool:
        parsed = as_cid(cid)
        try:
            self._call(f"block/stat {parsed}", lambda: self._client.block.stat(str(parsed), offline=True))
        except BlockNotFoundError:
            return False
        return True

    def put_block(self, cid: str | CID, data: bytes) -> None:
        parsed = as_cid(cid)
        if not parsed.matches(data):
            raise ContentMismatchError(str(parsed), "refusing to store a block that hashes differently")
        opts = {"cid-codec": parsed.codec_name, "mhtype": "sha2-256"}
        reply: Any = self._call(f"block/put {parsed}", lambda: self._client.block.put(io.BytesIO(data), opts=opts))
        returned = CID.parse(str(reply["Key"]))
        if returned.multihash != parsed.multihash:
            raise ContentMismatchError(str(parsed), f"{self.location} stored the block as {returned}")

    # -- files -------------------------------------------------------------------------------

    def put(
        self,
        source: Source,
        *,
        cid_version: int = 0,
        pin: bool = True,
        progress: ProgressCallback | None = None,
    ) -> str:
        # Only sources we can read again may be retried after a failed upload.
        replayable = isinstance(source, bytes | bytearray | memoryview | str | Path)

        def upload() -> str:
            try:
                stream = open_source(source)
            except OSError as exc:
                raise StoreError(f"cannot read the file to add: {exc}") from exc
            try:
                hashing = _HashingReader(stream, DagBuilder(None, cid_version=cid_version), progress)
                reply: Any = self._client.add(
                    hashing,
                    chunker=f"size-{CHUNK_SIZE}",
                    cid_version=cid_version,
                    raw_leaves=cid_version == 1,
                    trickle=False,
                    pin=pin,
                    opts={"hash": "sha2-256"},
                )
                expected = hashing.finish()
            finally:
                if stream is not source:
                    stream.close()
            returned = str(reply["Hash"])
            if CID.parse(returned) != expected:
                raise ContentMismatchError(
                    str(expected),
                    f"{self.location} returned {returned} for these bytes "
                    "(a daemon or proxy that ignores the chunking parameters?)",
                )
            return returned

        return self._call("add", upload, retry_timeouts=False, retries=None if replayable else 0)

    def pin(self, cid: str | CID) -> None:
        parsed = as_cid(cid)
        self._call(f"pin/add {parsed}", lambda: self._client.pin.add(str(parsed), recursive=True))

    def unpin(self, cid: str | CID) -> None:
        parsed = as_cid(cid)
        try:
            self._call(f"pin/rm {parsed}", lambda: self._client.pin.rm(str(parsed), recursive=True))
        except StoreError as exc:
            if "not pinned" not in str(exc):
                raise

    def is_pinned(self, cid: str | CID) -> bool:
        parsed = as_cid(cid)
        try:
            reply: Any = self._call(f"pin/ls {parsed}", lambda: self._client.pin.ls(str(parsed), type="recursive"))
        except StoreError as exc:
            if "not pinned" in str(exc) or isinstance(exc, BlockNotFoundError):
                return False
            raise
        keys = reply["Keys"] if reply is not None else {}
        return any(CID.parse(str(k)).multihash == parsed.multihash for k in keys)


class _HashingReader(io.RawIOBase):
    """Passes the upload through a hash-only DagBuilder, so the expected CID is known at the end."""

    def __init__(self, stream: BinaryIO, builder: DagBuilder, progress: ProgressCallback | None) -> None:
        self._chunks = iter_chunks(stream, CHUNK_SIZE)
        self._builder = builder
        self._progress = progress
        self._pending = memoryview(b"")
        self.name = "file"

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._builder.add_chunk(chunk)
            if self._progress is not None:
                self._progress(len(chunk))
            self._pending = memoryview(chunk)
        n = len(self._pending) if size is None or size < 0 else min(size, len(self._pending))
        out = bytes(self._pending[:n])
        self._pending = self._pending[n:]
        return out

    def finish(self) -> CID:
        while self.read(CHUNK_SIZE):  # the client may stop reading at EOF of its own accord
            pass
        return self._builder.finish().cid


def _short(exc: BaseException) -> str:
    text = str(exc.__cause__ or exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _map_error_response(what: str, exc: Exception) -> StoreError:
    message = str(exc)
    lowered = message.lower()
    if "not found" in lowered or "could not find" in lowered or "not pinned" in lowered:
        target = what.split(" ", 1)[1] if " " in what else what
        if "not pinned" in lowered:
            return StoreError(f"{target} is not pinned: {message}")
        return BlockNotFoundError(target, f"Kubo: {message}")
    return StoreError(f"Kubo refused {what}: {message}")
