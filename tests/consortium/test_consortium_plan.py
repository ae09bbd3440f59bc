"""Bad plans are refused by `consortium provision` with one line naming the field and the fix, and
nothing is written; the shipped example plan is valid."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from fedledger.consortium.plan import PlanError, load_plan, parse_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "consortium.toml"


def example() -> dict:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def provision(tmp_path: Path, plan: dict | str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "consortium.toml"
    path.write_text(plan if isinstance(plan, str) else tomli_w.dumps(plan), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "fedledger.cli", "consortium", "provision", str(path), "--out", str(tmp_path / "kits")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_example_plan_is_valid_and_derives_widths_from_compute_budgets() -> None:
    plan = load_plan(EXAMPLE)
    assert plan.k == 2 and [i.width for i in plan.institutions] == [1.0, 0.5, 0.5]
    assert plan.institutions[0].identity == "inst:hospital-1"
    assert plan.task.task().model_spec().num_classes == 10


def _missing_k(p: dict) -> None:
    del p["k"]


def _k_too_large(p: dict) -> None:
    p["k"] = 4


def _odd_width(p: dict) -> None:
    p["institutions"][1] = {**p["institutions"][1], "width_rate": 0.3}
    del p["institutions"][1]["compute_budget"]


def _both_sizes(p: dict) -> None:
    p["institutions"][0]["compute_budget"] = 0.5


def _shape_for_other_family(p: dict) -> None:
    p["task"]["input_shape"] = [64]


def _unknown_setting(p: dict) -> None:
    p["chain"]["rpc"] = "http://x"


def _duplicate_name(p: dict) -> None:
    p["institutions"][2]["name"] = "hospital-1"


def _dicom_with_colour_task(p: dict) -> None:
    p["task"]["input_shape"] = [3, 8, 8]


def _store_kind(p: dict) -> None:
    p["store"]["spec"] = "/srv/store"


def _reserved_name(p: dict) -> None:
    p["institutions"][0]["name"] = "aggregator"


def _one_label(p: dict) -> None:
    p["task"]["labels"] = ["only"]


CASES = [
    (_missing_k, r"k is missing: add it \(how many institutions must sign"),
    (_k_too_large, r"k = 4 exceeds the 3 institutions: lower k or add members"),
    (_odd_width, r"institutions\.hospital-2\.width_rate: got 0\.3: use one of 1, 0\.5, 0\.25, 0\.125"),
    (_both_sizes, r"hospital-1: give exactly one of width_rate or compute_budget"),
    (_shape_for_other_family, r"input_shape \[64\] does not fit model family 'cnn'"),
    (_unknown_setting, r"chain\.rpc is not a plan setting: remove it or check its spelling"),
    (_duplicate_name, r"name 'hospital-1' appears twice"),
    (_dicom_with_colour_task, r"institutions\.hospital-3\.data: DICOM slices are grey images"),
    (_store_kind, r"store\.spec: got '/srv/store': write \"local:"),
    (_reserved_name, r"'aggregator' names a role"),
    (_one_label, r"task\.labels: .*at least 2"),
]


@pytest.mark.parametrize(("mutate", "expected"), CASES, ids=[c[0].__name__.strip("_") for c in CASES])
def test_a_bad_plan_gets_one_line_naming_the_field_and_the_fix(mutate, expected) -> None:
    plan = example()
    mutate(plan)
    with pytest.raises(PlanError) as caught:
        parse_plan(plan, "consortium.toml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("consortium.toml: ")
    assert re.search(expected, message), message


@pytest.mark.parametrize(("mutate", "expected"), [CASES[1], CASES[7]], ids=["k_too_large", "dicom_with_colour_task"])
def test_provision_refuses_a_bad_plan_in_one_line_and_writes_nothing(tmp_path: Path, mutate, expected) -> None:
    plan = example()
    mutate(plan)
    done = provision(tmp_path, plan)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "kits").exists() and not list(tmp_path.glob(".kits*"))


def test_a_plan_that_is_not_toml_is_refused_in_one_line(tmp_path: Path) -> None:
    done = provision(tmp_path, "name = \n")
    assert done.returncode == 2 and "is not valid TOML" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_kits_are_never_written_over(tmp_path: Path) -> None:
    (tmp_path / "kits").mkdir()
    (tmp_path / "kits" / "something").write_text("x")
    done = provision(tmp_path, example())
    assert done.returncode == 2 and "exists and is not empty" in done.stderr
    assert [p.name for p in (tmp_path / "kits").iterdir()] == ["something"]


def test_a_missing_plan_names_the_file_and_the_docs(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"no plan at .*docs/operations\.md"):
        load_plan(tmp_path / "nope.toml")
