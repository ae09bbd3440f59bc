"""The Python compile path (py-solc-x -> solcjs wrapper -> npm solc) against Hardhat 3's own build."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from fedledger.chain import compiler
from fedledger.chain.compiler import CompilationError, CompiledContract, CompilerConfig
from fedledger.chain.paths import node_modules, project_root

WRAPPER = Path(compiler.__file__).with_name("solcjs_wrapper.py")


def test_python_bytecode_equals_hardhat_build(compiled_ledger: CompiledContract, tmp_path: Path) -> None:
    """Hardhat builds a copy of the project (so the checkout's artifacts stay untouched); its
    creation and runtime bytecode, metadata hash included, must equal Python's byte for byte."""
    root = project_root()
    for name in ("hardhat.config.js", "package.json"):
        shutil.copy(root / name, tmp_path / name)
    shutil.copytree(root / "contracts", tmp_path / "contracts")
    (tmp_path / "node_modules").symlink_to(node_modules())
    env = {**os.environ, "PATH": f"{node_modules() / '.bin'}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [str(node_modules() / ".bin" / "hardhat"), "build", "--no-tests"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Downloading" not in result.stdout + result.stderr  # the npm soljson, never a download
    artifact = json.loads((tmp_path / "artifacts/contracts/FederatedLedger.sol/FederatedLedger.json").read_text())
    assert artifact["bytecode"] == "0x" + compiled_ledger.bytecode.hex()
    assert artifact["deployedBytecode"] == "0x" + compiled_ledger.deployed_bytecode.hex()
    assert artifact["abi"] == compiled_ledger.abi


def test_compiler_settings_pin_prague(compiled_ledger: CompiledContract) -> None:
    assert CompilerConfig.load().settings["evmVersion"] == "prague"
    assert compiled_ledger.settings["evmVersion"] == "prague"
    assert compiled_ledger.compiler_version == CompilerConfig.load().version == "0.8.37"


def test_wrapper_answers_version_like_solc() -> None:
    out = subprocess.run([str(WRAPPER), "--version"], capture_output=True, text=True, check=True).stdout
    assert "0.8.37+commit." in out


def test_wrapper_output_is_clean_json_beyond_64_kib() -> None:
    """solcjs prints an SMT notice and truncates piped output at 64 KiB; the wrapper must do neither."""
    sources = compiler.ledger_sources()
    request = compiler.standard_json_input(sources, CompilerConfig.load().settings)
    request["settings"]["outputSelection"] = {"*": {"*": ["*"], "": ["ast"]}}  # a large output
    result = subprocess.run(
        [str(WRAPPER), "--standard-json", "--allow-paths", "/ignored"],
        input=json.dumps(request), capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert len(result.stdout.encode()) > 64 * 1024
    assert ">>>" not in result.stdout
    output = json.loads(result.stdout)
    assert "FederatedLedger" in output["contracts"]["project/contracts/FederatedLedger.sol"]


def test_compile_errors_name_the_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "contracts").mkdir()
    shutil.copy(project_root() / "contracts" / "compiler.json", tmp_path / "contracts" / "compiler.json")
    (tmp_path / "contracts" / "FederatedLedger.sol").write_text(
        "// SPDX-License-Identifier: Apache-2.0\npragma solidity 0.8.37;\ncontract FederatedLedger { oops }\n"
    )
    monkeypatch.setenv("FEDLEDGER_NODE_MODULES", str(node_modules()))
    monkeypatch.setenv("FEDLEDGER_PROJECT_ROOT", str(tmp_path))
    monkeypatch.setenv("FEDLEDGER_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(CompilationError, match=r"FederatedLedger\.sol"):
        compiler.compile_ledger(use_cache=False)


def test_compile_cache_round_trips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled_ledger: CompiledContract
) -> None:
    monkeypatch.setenv("FEDLEDGER_CACHE_DIR", str(tmp_path))
    # Seed the cache from this session's real compilation, then read it back through compile_ledger.
    monkeypatch.setattr(compiler, "_compile", lambda *args, **kwargs: compiled_ledger)
    first = compiler.compile_ledger()
    cached = list((tmp_path / "contracts").glob("FederatedLedger-*.json"))
    assert len(cached) == 1
    monkeypatch.setattr(compiler, "_compile", lambda *a, **k: pytest.fail("cache not used"))
    assert compiler.compile_ledger() == first == compiled_ledger


def test_native_solc_on_path_is_preferred_standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No native solc can be installed here, so a stand-in script answers ``--version``."""
    fake = tmp_path / "solc"
    fake.write_text(
        "#!/bin/sh\necho 'solc, the solidity compiler commandline interface'\n"
        "echo 'Version: 0.8.37+commit.f401782d.Linux.g++'\n"
    )
    fake.chmod(0o755)
    monkeypatch.delenv(compiler.SOLC_ENV, raising=False)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert compiler.find_solc("0.8.37") == fake
    # A native solc of another version is not used: the wrapper (pinned version) is.
    fake.write_text("#!/bin/sh\necho 'Version: 0.8.20+commit.a1b79de6.Linux.g++'\n")
    assert compiler.find_solc("0.8.37") != fake
