"""Local development chains: Anvil (default) or Hardhat's node, on a free loopback port.

Both come from ``node_modules`` and start with the well-known development mnemonic, so the same
funded accounts exist on either. Their banners print those accounts' private keys, so their stdout
is discarded; stderr goes to a private log file that error messages quote from.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Literal

from fedledger.chain.paths import anvil_binary, node_binary, node_modules, project_root
from fedledger.netutil import free_port

ChainKind = Literal["anvil", "hardhat"]
DEV_CHAIN_ID = 31337
HARDFORK = "prague"


class LocalChainError(RuntimeError):
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


class LocalChain:
    """A local chain process, started on ``start()`` (or ``with``) and stopped on ``stop()``.

    ``state_path`` (Anvil only) loads the chain state from that file when it exists and writes it
    back on a clean stop, so a ledger deployed once survives restarts.
    """

    def __init__(
        self,
        kind: ChainKind = "anvil",
        *,
        port: int | None = None,
        state_path: str | Path | None = None,
        chain_id: int = DEV_CHAIN_ID,
        startup_timeout: float | None = None,
    ) -> None:
        if kind not in ("anvil", "hardhat"):
            raise ValueError(f"unknown chain kind {kind!r}: expected 'anvil' or 'hardhat'")
        if state_path is not None and kind != "anvil":
            raise ValueError("state persistence is supported for Anvil only")
        if kind == "hardhat" and chain_id != DEV_CHAIN_ID:
            raise ValueError("Hardhat's node always runs chain id 31337")
        self.kind: ChainKind = kind
        self.state_path = Path(state_path) if state_path is not None else None
        self.chain_id = chain_id
        self.startup_timeout = startup_timeout or (90.0 if kind == "hardhat" else 30.0)
        self._requested_port = port
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._logdir: tempfile.TemporaryDirectory[str] | None = None
        self._log_path: Path | None = None

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
        self._logdir = tempfile.TemporaryDirectory(prefix=f"fedledger-{self.kind}-")
        attempts = 1 if self._requested_port else 3
        last_error: LocalChainError | None = None
        for _ in range(attempts):
            self.port = self._requested_port or free_port()
            try:
                self._launch()
                self._wait_until_ready()
                return self
            except LocalChainError as exc:
                last_error = exc
                self._terminate()
        self._cleanup_logs()
        assert last_error is not None
        raise last_error

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (SIGTERM: Anvil writes its state file), then force if it hangs."""
        self._terminate(timeout)
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
                cmd += ["--state", str(self.state_path)]
            return cmd
        cli = node_modules() / "hardhat" / "dist" / "src" / "cli.js"
        return [str(node_binary()), str(cli), "node", "--hostname", "127.0.0.1", "--port", str(self.port)]

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
            f"{self.kind} did not answer on {self.rpc_url} within {self.startup_timeout:.0f}s: "
            f"{self._log_tail()}"
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
