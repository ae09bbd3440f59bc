"""Where the chain tooling lives: the contracts, ``node_modules`` and its Node 22.

The contracts and the npm tools sit at the repository root (next to ``fedledger/``). Environment
variables override each location, so an installed package can point at a checkout elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from fedledger.errors import FedLedgerError

PROJECT_ROOT_ENV = "FEDLEDGER_PROJECT_ROOT"
NODE_MODULES_ENV = "FEDLEDGER_NODE_MODULES"


class ToolNotFoundError(FedLedgerError, RuntimeError):
    """A required external tool (node, solcjs, anvil, hardhat) is missing."""


def project_root() -> Path:
    """The checkout holding ``contracts/``, ``hardhat.config.js`` and ``node_modules/``."""
    override = os.environ.get(PROJECT_ROOT_ENV)
    if override:
        return Path(override).resolve()
    return Path(__file__).resolve().parents[2]


def contracts_dir() -> Path:
    return project_root() / "contracts"


def node_modules() -> Path:
    override = os.environ.get(NODE_MODULES_ENV)
    if override:
        return Path(override).resolve()
    return project_root() / "node_modules"


def node_tool(name: str) -> Path:
    """``node_modules/.bin/<name>``, or a clear error saying how to install it."""
    path = node_modules() / ".bin" / name
    if not path.exists():
        raise ToolNotFoundError(
            f"{name} not found at {path}; run `make install` (or `npm install`) in {project_root()}"
        )
    return path


def node_binary() -> Path:
    """Node 22 from the pinned ``node`` npm package (Hardhat 3 refuses older Node)."""
    return node_tool("node")


def anvil_binary() -> Path:
    """Anvil's native binary from its npm platform package, else the npm launcher.

    The launcher (``.bin/anvil``, a Node script) exits as soon as it forwards SIGTERM, before Anvil
    has written its state file and released its port; running the binary itself lets ``stop()``
    wait for both.
    """
    import platform

    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    system = platform.system().lower()
    native = node_modules() / "@foundry-rs" / f"anvil-{system}-{arch}" / "bin" / "anvil"
    if native.exists() and os.access(native, os.X_OK):
        return native
    return node_tool("anvil")
