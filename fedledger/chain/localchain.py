"""Local development chains: Anvil (default) or Hardhat's node, on a free loopback port.

Both come from ``node_modules`` and start with the well-known development mnemonic, so the same
funded accounts exist on either. Their banners print those accounts' private keys, so their stdout
is discarded; stderr goes to a private log file that error messages quote from.

A chain never outlives the thread that started it (the parent-death signal, via ``setpriv``), so
a killed launcher leaves no chain holding its port. With a state file, Anvil dumps its state every
``state_interval`` seconds into ``<state>.live``; Anvil rewrites that file in place, so a kill in
the middle of a dump can tear it. Only complete dumps are promoted (atomically) to ``<state>``, by
a checkpoint thread, on stop and at the next start, so a crash loses at most a few seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Literal

from fedledger.chain.paths import anvil_binary, node_binary, node_modules, project_root
from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_bytes
from fedledger.netutil import free_port

ChainKind = Literal["anvil", "hardhat"]
DEV_CHAIN_ID = 31337
HARDFORK = "prague"
DEFAULT_STATE_INTERVAL = 1  # seconds between Anvil's state dumps (Anvil takes whole seconds)


class LocalChainError(FedLedgerError, RuntimeError):
    """The local chain did not start, or stopped unexpectedly."""


def rpc_request(url: str, method: str, params: list[object] | None = None, timeout: float = 5.0) -> object:
    """One JSON-RPC call over HTTP with the standard library (used before web3 is worth loading)."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"RPC URL must be http(s): {url!r}")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked above)
        reply = json.loads(response.read())
    if "error" in reply:
        raise LocalChainError(f"{url} answered {method} with error {reply['error']}")
    return reply.get("result")


def port_in_use(port: int) -> bool:
    """True when something listens on 127.0.0.1:``port`` (a socket in TIME_WAIT does not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _dying_with_parent(cmd: list[str]) -> list[str]:
    """Prefix ``cmd`` so the kernel sends it SIGTERM when its parent dies (Linux; no-op elsewhere).

    SIGTERM, not SIGKILL: Anvil then still writes its state on the way out.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *cmd] if setpriv else cmd


class LocalChain:
    """A local chain process, started on ``start()`` (or ``with``) and stopped on ``stop()``.

    ``state_path`` (Anvil only) loads the chain state from that file when it exists and keeps it
    current every ``state_interval`` seconds and on stop, so a ledger deployed once survives
    restarts and crashes. The chain dies with the thread that called ``start()``.
    """

    def __init__(
        self,
        kind: ChainKind = "anvil",
        *,
        port: int | None = None,
        state_path: str | Path | None = None,
        chain_id: int = DEV_CHAIN_ID,
        startup_timeout: float | None = None,
        state_interval: int = DEFAULT_STATE_INTERVAL,
    ) -> None:
        if kind not in ("anvil", "hardhat"):
            raise ValueError(f"unknown chain kind {kind!r}: expected 'anvil' or 'hardhat'")
        if state_path is not None and kind != "anvil":
            raise ValueError("state persistence is supported for Anvil only")
        if kind == "hardhat" and chain_id != DEV_CHAIN_ID:
            raise ValueError("Hardhat's node always runs chain id 31337")
        if state_interval < 1:
            raise ValueError(f"state_interval must be at least 1 second, not {state_interval}")
        self.kind: ChainKind = kind
        self.state_path = Path(state_path) if state_path is not None else None
        self.state_interval = state_interval
        self.chain_id = chain_id
        self.startup_timeout = startup_timeout or (90.0 if kind == "hardhat" else 30.0)
        self._requested_port = port
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None
        self._checkpoints: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def rpc_url(self) -> str:
        if self.port is None:
            raise LocalChainError("the local chain is not running")
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> LocalChain:
        """Start the chain and return once it answers JSON-RPC. Retries on a port race."""
        if self.running:
            return self
        if self._requested_port and port_in_use(self._requested_port):
            raise LocalChainError(f"port {self._requested_port} is in use (another chain still running?)")
        self._promote_live_state(consume=True)
        self._logdir = tempfile.TemporaryDirectory(prefix=f"fedledger-{self.kind}-")
        attempts = 1 if self._requested_port else 3
        last_error: LocalChainError | None = None
        for _ in range(attempts):
            self.port = self._requested_port or free_port()
            try:
                self._launch()
                self._wait_until_ready()
                self._start_checkpoints()
                return self
            except LocalChainError as exc:
                last_error = exc
                self._terminate()
        self._cleanup_logs()
        assert last_error is not None
        raise last_error

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (SIGTERM: Anvil writes its state file), then force if it hangs."""
        self._stop_checkpoints()
        self._terminate(timeout)
        self._promote_live_state(consume=True)
        self.port = None
        self._cleanup_logs()

    def __enter__(self) -> LocalChain:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.rpc_url if self.port is not None else "stopped"
        return f"LocalChain(kind={self.kind!r}, {where})"

    # ------------------------------------------------------------------ internals

    def _command(self) -> list[str]:
        assert self.port is not None
        if self.kind == "anvil":
            cmd = [
                str(anvil_binary()),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--chain-id", str(self.chain_id),
                "--hardfork", HARDFORK,
            ]  # fmt: skip
            if self.state_path is not None:
                self.state_path.parent.mkdir(parents=True, exist_ok=True)
                if self.state_path.exists():
                    cmd += ["--load-state", str(self.state_path)]
                cmd += ["--dump-state", str(self._live_state_path), "--state-interval", str(self.state_interval)]
            return _dying_with_parent(cmd)
        cli = node_modules() / "hardhat" / "dist" / "src" / "cli.js"
        return _dying_with_parent(
            [str(node_binary()), str(cli), "node", "--hostname", "127.0.0.1", "--port", str(self.port)]
        )

    def _launch(self) -> None:
        assert self._logdir is not None
        self._log_path = Path(self._logdir.name) / f"{self.kind}-{self.port}.stderr.log"
        env = dict(os.environ)
        # anvil's npm launcher and Hardhat both need Node 22 first on PATH.
        env["PATH"] = f"{node_modules() / '.bin'}{os.pathsep}{env.get('PATH', '')}"
        env.setdefault("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
        with open(self._log_path, "wb") as stderr:
            self._process = subprocess.Popen(
                self._command(),
                cwd=project_root(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # banners list private keys: never capture or echo them
                stderr=stderr,
                env=env,
                start_new_session=True,  # Ctrl-C in a terminal reaches us, not the chain directly
            )

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                if self.port is not None and port_in_use(self.port):
                    raise LocalChainError(f"port {self.port} is in use (another chain still running?)")
                raise LocalChainError(f"{self.kind} exited during start-up: {self._log_tail()}")
            try:
                answered = rpc_request(self.rpc_url, "eth_chainId", timeout=2.0)
            except (OSError, urllib.error.URLError, ValueError, LocalChainError):
                time.sleep(0.2)
                continue
            if int(str(answered), 16) != self.chain_id:
                raise LocalChainError(f"{self.rpc_url} is another chain (chain id {answered})")
            return
        raise LocalChainError(
            f"{self.kind} did not answer on {self.rpc_url} within {self.startup_timeout:.0f}s: {self._log_tail()}"
        )

    def _terminate(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Our own session: the launcher and the chain binary it spawned, nothing else.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    # ------------------------------------------------------------------ state checkpoints

    @property
    def _live_state_path(self) -> Path:
        assert self.state_path is not None
        return self.state_path.with_name(self.state_path.name + ".live")

    def _promote_live_state(self, *, consume: bool = False) -> None:
        """Copy Anvil's latest dump over the state file if it is complete (a torn dump is skipped).

        ``consume`` (no Anvil running: at start and after stop) also removes the dump, so a later
        start never prefers a leftover dump to a state file someone restored by hand.
        """
        if self.state_path is None:
            return
        live = self._live_state_path
        try:
            dump = live.read_bytes()
            json.loads(dump)
        except (OSError, ValueError):
            dump = None  # no dump yet, or one torn by a kill mid-write: the previous state stands
        if dump is not None and (not self.state_path.exists() or self.state_path.read_bytes() != dump):
            atomic_write_bytes(self.state_path, dump)
        if consume:
            live.unlink(missing_ok=True)

    def _start_checkpoints(self) -> None:
        if self.state_path is None:
            return
        self._stopping.clear()
        self._checkpoints = threading.Thread(target=self._checkpoint_loop, name="chain-state", daemon=True)
        self._checkpoints.start()

    def _checkpoint_loop(self) -> None:
        while not self._stopping.wait(self.state_interval):
            with contextlib.suppress(OSError):
                self._promote_live_state()

    def _stop_checkpoints(self) -> None:
        thread, self._checkpoints = self._checkpoints, None
        if thread is not None:
            self._stopping.set()
            thread.join()

    def _log_tail(self, lines: int = 8) -> str:
        if self._log_path is None or not self._log_path.exists():
            return "(no output)"
        text = self._log_path.read_text(errors="replace").strip().splitlines()
        kept = [line for line in text if "private key" not in line.lower()][-lines:]
        return " | ".join(kept) or "(no output)"

    def _cleanup_logs(self) -> None:
        if self._logdir is not None:
            self._logdir.cleanup()
            self._logdir = None
            self._log_path = None
