"""Compile the ledger contract from ``contracts/`` with py-solc-x, exactly as Hardhat does.

py-solc-x expects a native ``solc``. Native builds cannot be downloaded here, so by default it drives
the npm solc (soljson.js) through ``solcjs_wrapper.py``; a native ``solc`` on PATH (or named by
``FEDLEDGER_SOLC``) of the pinned version is used instead when present. Version and settings come
from ``contracts/compiler.json`` (shared with hardhat.config.js) and sources get Hardhat 3's source
unit names (``project/contracts/...``), so the metadata hash, and therefore the bytecode, is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedledger.chain.paths import ToolNotFoundError, contracts_dir
from fedledger.fileio import atomic_write_text

LEDGER_SOURCE = "FederatedLedger.sol"
LEDGER_CONTRACT = "FederatedLedger"
SOURCE_PREFIX = "project/contracts/"  # Hardhat 3's source unit names for files under contracts/
SOLC_ENV = "FEDLEDGER_SOLC"
CACHE_ENV = "FEDLEDGER_CACHE_DIR"
_WRAPPER = Path(__file__).with_name("solcjs_wrapper.py")
_VERSION_RE = re.compile(r"(\d+\.\d+\.\d+)\+commit\.[0-9a-f]+")
_OUTPUTS = ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.methodIdentifiers"]


class CompilationError(RuntimeError):
    """solc rejected the sources; the message holds its formatted diagnostics."""


@dataclass(frozen=True)
class CompilerConfig:
    """The pinned compiler version and its standard-JSON settings."""

    version: str
    settings: dict[str, Any]

    @classmethod
    def load(cls, path: Path | None = None) -> CompilerConfig:
        data = json.loads((path or contracts_dir() / "compiler.json").read_text())
        return cls(version=data["version"], settings=data["settings"])


@dataclass(frozen=True)
class CompiledContract:
    """What deployment and the client need from one compiled contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    method_identifiers: dict[str, str]
    compiler_version: str
    settings: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "abi": self.abi,
            "bytecode": "0x" + self.bytecode.hex(),
            "deployedBytecode": "0x" + self.deployed_bytecode.hex(),
            "methodIdentifiers": self.method_identifiers,
            "compilerVersion": self.compiler_version,
            "settings": self.settings,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompiledContract:
        return cls(
            name=data["name"],
            abi=data["abi"],
            bytecode=bytes.fromhex(data["bytecode"].removeprefix("0x")),
            deployed_bytecode=bytes.fromhex(data["deployedBytecode"].removeprefix("0x")),
            method_identifiers=data["methodIdentifiers"],
            compiler_version=data["compilerVersion"],
            settings=data["settings"],
        )


def solc_version_of(binary: Path | str) -> str | None:
    """The ``x.y.z`` a solc-compatible executable reports, or None if it does not answer."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=60, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION_RE.search(out)
    return match.group(1) if match else None


def find_solc(version: str) -> Path:
    """The executable py-solc-x should run: ``$FEDLEDGER_SOLC``, else a native ``solc`` of
    ``version`` on PATH, else the solcjs wrapper."""
    forced = os.environ.get(SOLC_ENV)
    if forced:
        return Path(forced)
    native = shutil.which("solc")
    if native and solc_version_of(native) == version:
        return Path(native)
    return _wrapper_executable()


def _wrapper_executable() -> Path:
    """The wrapper script, or (when installed without its exec bit) a launcher for it."""
    if os.access(_WRAPPER, os.X_OK):
        return _WRAPPER
    launcher = _cache_dir() / "solcjs-wrapper"
    script = f'#!/bin/sh\nexec "{sys.executable}" "{_WRAPPER}" "$@"\n'
    if not launcher.exists() or launcher.read_text() != script:
        launcher.parent.mkdir(parents=True, exist_ok=True)
        launcher.write_text(script)
        launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    return launcher


def _cache_dir() -> Path:
    """``$FEDLEDGER_CACHE_DIR``, else ``$XDG_CACHE_HOME/fedledger`` (``~/.cache/fedledger``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fedledger"


def standard_json_input(sources: dict[str, str], settings: dict[str, Any]) -> dict[str, Any]:
    """solc standard-JSON input with inline sources (no import callback needed)."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sorted(sources.items())},
        "settings": {**settings, "outputSelection": {"*": {"*": _OUTPUTS}}},
    }


def ledger_sources(root: Path | None = None) -> dict[str, str]:
    """The contract sources under ``contracts/`` (tests excluded), keyed by Hardhat's source names."""
    base = root or contracts_dir()
    return {
        SOURCE_PREFIX + path.relative_to(base).as_posix(): path.read_text()
        for path in sorted(base.rglob("*.sol"))
        if not path.name.endswith(".t.sol")
    }


def compile_ledger(
    *, use_cache: bool = True, solc: Path | str | None = None, config: CompilerConfig | None = None
) -> CompiledContract:
    """Compile FederatedLedger. Results are cached by (sources, settings, compiler version)."""
    config = config or CompilerConfig.load()
    sources = ledger_sources()
    input_json = standard_json_input(sources, config.settings)
    key = hashlib.sha256(json.dumps([config.version, input_json], sort_keys=True).encode()).hexdigest()
    cache_file = _cache_dir() / "contracts" / f"{LEDGER_CONTRACT}-{key[:24]}.json"
    if use_cache and cache_file.exists():
        return CompiledContract.from_json(json.loads(cache_file.read_text()))
    compiled = _compile(input_json, SOURCE_PREFIX + LEDGER_SOURCE, LEDGER_CONTRACT, config, solc)
    if use_cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache_file, json.dumps(compiled.to_json()))
    return compiled


def _compile(
    input_json: dict[str, Any],
    source_name: str,
    contract_name: str,
    config: CompilerConfig,
    solc: Path | str | None,
) -> CompiledContract:
    import solcx  # heavy-ish; only needed when actually compiling
    from solcx.exceptions import SolcError

    binary = Path(solc) if solc else find_solc(config.version)
    found = solc_version_of(binary)
    if found is None:
        raise ToolNotFoundError(f"{binary} does not answer --version like solc does")
    if found != config.version:
        raise CompilationError(f"{binary} is solc {found}; contracts/compiler.json pins {config.version}")
    try:
        output = solcx.compile_standard(input_json, solc_binary=binary)
    except SolcError as exc:
        raise CompilationError(f"solc {found} rejected {source_name}:\n{exc}") from exc
    try:
        contract = output["contracts"][source_name][contract_name]
    except KeyError as exc:
        raise CompilationError(f"solc output has no {contract_name} in {source_name}") from exc
    return CompiledContract(
        name=contract_name,
        abi=contract["abi"],
        bytecode=bytes.fromhex(contract["evm"]["bytecode"]["object"]),
        deployed_bytecode=bytes.fromhex(contract["evm"]["deployedBytecode"]["object"]),
        method_identifiers=contract["evm"]["methodIdentifiers"],
        compiler_version=found,
        settings=config.settings,
    )
