#!/usr/bin/env python3
"""A ``solc``-compatible front for the npm ``solcjs``, so py-solc-x can drive the WASM compiler.

py-solc-x runs ``solc --version`` and ``solc --standard-json`` (input on stdin, output on stdout).
solcjs differs in three ways this wrapper hides: it prints ``>>> Cannot retry compilation with
SMT ...`` before the JSON, it truncates its output at 64 KiB when stdout is a pipe (so its output
goes through a file here), and it lacks ``--allow-paths`` (accepted and ignored: sources are inline).

Standard library only: it runs as its own process, possibly under a different Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_SMT_NOTICE = ">>> Cannot retry compilation with SMT"
_IGNORED_WITH_VALUE = {"--allow-paths"}


def _node_modules() -> Path:
    override = os.environ.get("FEDLEDGER_NODE_MODULES")
    if override:
        return Path(override)
    root = os.environ.get("FEDLEDGER_PROJECT_ROOT")
    return (Path(root) if root else Path(__file__).resolve().parents[2]) / "node_modules"


def _solcjs_command() -> list[str]:
    modules = _node_modules()
    node = modules / ".bin" / "node"
    solcjs = modules / "solc" / "solc.js"
    for path in (node, solcjs):
        if not path.exists():
            sys.stderr.write(f"solcjs wrapper: {path} is missing; run `npm install`\n")
            raise SystemExit(2)
    return [str(node), str(solcjs)]


def _translate(args: list[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in _IGNORED_WITH_VALUE:
            skip = True
            continue
        out.append(arg)
    return out


def main(argv: list[str]) -> int:
    args = _translate(argv)
    command = _solcjs_command() + args
    if "--version" in args:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        return result.returncode
    if "--standard-json" not in args:
        sys.stderr.write("solcjs wrapper: only --version and --standard-json are supported\n")
        return 2
    stdin = sys.stdin.buffer.read()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        result = subprocess.run(command, input=stdin, stdout=out, stderr=err, check=False)
        out.seek(0)
        err.seek(0)
        text = out.read().decode("utf-8")
        sys.stderr.write(err.read().decode("utf-8", errors="replace"))
    lines = [line for line in text.splitlines(keepends=True) if not line.startswith(_SMT_NOTICE)]
    sys.stdout.write("".join(lines))
    sys.stdout.flush()
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
