"""The ``fedledger fl`` commands through the real root CLI app (in-process, so torch loads once)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from fedledger.cli import app
from fedledger.fl import ModelSpec, UpdateMetadata, extract_submodel, initial_global_state, save_global, save_update
from fedledger.fl.experiment import DEFAULT_METHOD


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _run(*args: str) -> _Result:
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _Result(result.exit_code, result.stdout, result.stderr)


def test_quick_experiment_prints_json_figures():
    result = _run("fl", "experiment", "--quick", "--rounds", "2")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (setting,) = data["settings"]
    assert setting["label"] == "digits / dirichlet α=1 / 5 inst / widths by volume"
    assert data["config"]["assignments"] == ["by_volume"] and data["config"]["aggregation_rule"] == "alignment"
    assert set(setting["methods"]) == {"fedavg_full", "fedavg_smallest", "alignment_static", DEFAULT_METHOD}
    assert "val_accuracy_mean" in setting["methods"][DEFAULT_METHOD]
    assert all(len(curve) == 2 for curve in setting["accuracy_per_round"].values())
    assert 0 <= setting["methods"]["fedavg_full"]["accuracy_mean"] <= 100


def test_full_experiment_writes_table_and_plot(tmp_path: Path):
    result = _run(
        "fl",
        "experiment",
        "--datasets",
        "breast_cancer",
        "--skews",
        "iid",
        "--institutions",
        "5",
        "--assignments",
        "by_volume,against_volume",
        "--aggregation-rule",
        "median",
        "--rounds",
        "1",
        "--seeds",
        "0,1",
        "--out",
        str(tmp_path),
        "--stem",
        "exp",
    )
    assert result.returncode == 0, result.stderr
    table = (tmp_path / "exp.md").read_text()
    for assignment in ("by volume", "against volume"):
        assert f"| breast_cancer / iid / 5 inst / widths {assignment} | alignment, rolling |" in table
        assert f"| breast_cancer / iid / 5 inst / widths {assignment} | alignment, static |" in table
    assert "momentum" not in table  # defined on the aligned mean only: dropped under the median rule
    assert "/ 20 inst" not in table
    assert "claim holds" in table and table in result.stdout + "\n"
    assert (tmp_path / "exp-accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_exits_2_without_traceback():
    for args in (
        ("--datasets", "mnist"),
        ("--seeds", "a,b"),
        ("--assignments", "by_size"),
        ("--aggregation-rule", "mean"),
        ("--skews", "0.3"),
        ("--methods", "alignment_static_dropout"),
    ):
        result = _run("fl", "experiment", *args)
        assert result.returncode == 2
        assert "error:" in result.stderr and "Traceback" not in result.stderr
    robust = _run("fl", "experiment", "--aggregation-rule", "median", "--methods", "alignment_static_momentum")
    assert robust.returncode == 2 and "need --aggregation-rule alignment" in robust.stderr
    momentum = _run("fl", "experiment", "--server-momentum", "1.5")
    assert momentum.returncode == 2 and "--server-momentum" in momentum.stderr


def test_inspect_update_and_global_files(tmp_path: Path):
    spec = ModelSpec("mlp", (4,), 2, (8,))
    g = initial_global_state(spec, 0)
    base = save_global(tmp_path / "g.st", g, spec, 3)
    sub, imap = extract_submodel(g, spec, 0.5)
    save_update(tmp_path / "u.st", sub, UpdateMetadata("h1", 3, 10, base, imap))
    update_info = json.loads(_run("fl", "inspect", str(tmp_path / "u.st")).stdout)
    assert update_info["kind"] == "update" and update_info["base_digest"] == base.hex()
    assert update_info["mapping_digest"] == imap.digest().hex() and update_info["tensors"]["layers.0.bias"] == [4]
    global_info = json.loads(_run("fl", "inspect", str(tmp_path / "g.st")).stdout)
    assert global_info["kind"] == "global" and global_info["sm3"] == base.hex()
    (tmp_path / "junk").write_bytes(b"not a model")
    bad = _run("fl", "inspect", str(tmp_path / "junk"))
    assert bad.returncode == 2 and "junk" in bad.stderr and "Traceback" not in bad.stderr
