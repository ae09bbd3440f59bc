"""The `fedledger store` commands and `fedledger bench store`, run as a user would run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def fedledger(*args: str, env_home: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "FEDLEDGER_HOME": str(env_home)}
    env.pop("FEDLEDGER_STORE", None)
    return subprocess.run(
        [str(Path(sys.executable).parent / "fedledger"), *args],
        capture_output=True,
        env=env,
        input=stdin,
        timeout=300,
    )


def test_add_get_car_round_trip_via_cli(tmp_path: Path, reference_files: dict[str, Path], ipfs_cid_v0: object) -> None:
    source = reference_files["1MB"]
    added = fedledger("store", "add", str(source), env_home=tmp_path / "home")
    assert added.returncode == 0, added.stderr
    cid = added.stdout.decode().strip()
    assert cid == ipfs_cid_v0(source)  # type: ignore[operator]
    assert (tmp_path / "home" / "store" / "blocks").is_dir()  # default store under $FEDLEDGER_HOME

    out = tmp_path / "out.bin"
    got = fedledger("store", "get", cid, "-o", str(out), env_home=tmp_path / "home")
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == source.read_bytes()

    car = tmp_path / "x.car"
    assert fedledger("store", "export-car", cid, "-o", str(car), env_home=tmp_path / "home").returncode == 0
    other = f"local:{tmp_path / 'other'}"
    imported = fedledger("store", "import-car", str(car), "--store", other, env_home=tmp_path / "home")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.decode().split() == [cid]
    stat = fedledger("store", "stat", cid, "--store", other, env_home=tmp_path / "home")
    assert json.loads(stat.stdout)["size"] == source.stat().st_size


def test_stdin_and_cid_version_1(tmp_path: Path) -> None:
    added = fedledger("store", "add", "-", "--cid-version", "1", env_home=tmp_path, stdin=b"")
    assert added.stdout.decode().strip() == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


@pytest.mark.parametrize(
    "args",
    [
        ["store", "get", "not-a-cid", "-o", "x"],
        ["store", "add", "/definitely/missing/file"],
        ["store", "add", "x", "--store", "ftp:somewhere"],
    ],
)
def test_bad_input_exits_2_without_traceback(args: list[str], tmp_path: Path) -> None:
    result = fedledger(*args, env_home=tmp_path)
    assert result.returncode == 2
    assert b"Traceback" not in result.stderr
    assert b"error" in result.stderr


def test_invalid_cid_exit_code_is_2(tmp_path: Path) -> None:
    assert fedledger("store", "get", "not-a-cid", "-o", "x", env_home=tmp_path).returncode == 2


@pytest.mark.parametrize("cid", [" ", "", "\t", "bafy\u00e9"])
def test_blank_or_non_ascii_cid_gives_one_line_not_a_traceback(cid: str, tmp_path: Path) -> None:
    result = fedledger("store", "get", cid, "-o", str(tmp_path / "o"), env_home=tmp_path)
    assert result.returncode == 2  # bad input, like every malformed CID
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "not a CID" in lines[0], result.stderr
    assert not (tmp_path / "o").exists()


def test_get_into_a_missing_folder_creates_it(tmp_path: Path) -> None:
    source = tmp_path / "f.bin"
    source.write_bytes(b"model bytes")
    cid = fedledger("store", "add", str(source), env_home=tmp_path).stdout.decode().strip()
    out = tmp_path / "not" / "yet" / "there.bin"
    got = fedledger("store", "get", cid, "-o", str(out), env_home=tmp_path)
    assert got.returncode == 0, got.stderr
    assert out.read_bytes() == b"model bytes"
    blocked = tmp_path / "a-file"
    blocked.write_bytes(b"")
    refused = fedledger("store", "get", cid, "-o", str(blocked / "x.bin"), env_home=tmp_path)
    assert refused.returncode == 1
    lines = refused.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write"), lines
    assert "is not a folder" in lines[0]


def test_missing_content_is_reported(tmp_path: Path) -> None:
    result = fedledger(
        "store",
        "get",
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
        "-o",
        str(tmp_path / "o"),
        env_home=tmp_path,
    )
    assert result.returncode == 1 and b"not found" in result.stderr
    assert not (tmp_path / "o").exists()


def test_bench_store_prints_its_ratio(tmp_path: Path) -> None:
    result = fedledger("bench", "store", "--json", "--size-mib", "8", "--dir", str(tmp_path), env_home=tmp_path)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    for key in (
        "sha256_mb_per_s",
        "put_mb_per_s",
        "get_mb_per_s",
        "put_ratio_to_sha256",
        "get_ratio_to_sha256",
    ):
        assert figures[key] > 0
    assert figures["goal_ratio"] == 0.5


def test_output_paths_are_spelled_out_and_the_old_output_spelling_still_works(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedledger.cli import app

    runner = CliRunner()
    source = tmp_path / "model.bin"
    source.write_bytes(b"weights" * 1000)
    store = f"local:{tmp_path / 'store'}"
    cid = runner.invoke(app, ["store", "add", str(source), "--store", store]).stdout.strip()
    for spelling in ("--out", "-o", "--output"):
        target = tmp_path / f"copy{spelling}"
        result = runner.invoke(app, ["store", "get", cid, spelling, str(target), "--store", store])
        assert result.exit_code == 0, result.output
        assert target.read_bytes() == source.read_bytes()
    help_text = runner.invoke(app, ["store", "get", "--help"]).stdout
    assert "--out" in help_text and "--output" not in help_text  # the old spelling is a hidden alias

    a_car, b_car = tmp_path / "a.car", tmp_path / "b.car"
    clash = runner.invoke(
        app, ["store", "export-car", cid, "--out", str(a_car), "--output", str(b_car), "--store", store]
    )
    assert clash.exit_code == 2 and "disagree" in clash.stderr
    missing = runner.invoke(app, ["store", "export-car", cid, "--store", store])
    assert missing.exit_code == 2 and "--out" in missing.stderr
    assert not a_car.exists() and not b_car.exists()
