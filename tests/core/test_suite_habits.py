"""The suite imports its helpers as tests.support.* (importlib import mode): no module edits sys.path."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _sys_path_edits(source: str) -> list[int]:
    """Line numbers of sys.path.insert/append/extend calls and of assignments to sys.path."""

    def is_sys_path(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "path"
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
        )

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("insert", "append", "extend") and is_sys_path(node.func.value):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            lines += [node.lineno for target in targets if is_sys_path(target)]
    return sorted(lines)


def test_the_detector_finds_sys_path_edits() -> None:
    assert _sys_path_edits("import sys\nsys.path.insert(0, 'x')\nsys.path += ['y']\n") == [2, 3]
    assert _sys_path_edits("import sys\nprint(sys.path)\n") == []


def test_no_test_module_edits_sys_path() -> None:
    offenders = {
        str(path.relative_to(TESTS)): found
        for path in sorted(TESTS.rglob("*.py"))
        if (found := _sys_path_edits(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}
