"""A running party picks up a re-issued kit: when its roster, threshold data, share or plan copy
changes on disk, the role is stopped and started again on the new kit; otherwise it runs once."""

from __future__ import annotations

import threading
from pathlib import Path

from fedledger.consortium.reload import run_reloading


def kit(folder: Path) -> Path:
    (folder / "keys").mkdir(parents=True)
    (folder / "keys" / "consortium.json").write_text('{"members": 3}')
    (folder / "consortium.toml").write_text("k = 2\n")
    return folder


def test_a_role_that_finishes_runs_once(tmp_path: Path) -> None:
    calls: list[bool] = []
    assert run_reloading(kit(tmp_path / "k"), lambda stop: calls.append(stop.is_set()) or 7, interval=0.05) == 7
    assert calls == [False]


def test_a_reissued_roster_stops_the_role_and_starts_it_on_the_new_kit(tmp_path: Path) -> None:
    folder = kit(tmp_path / "k")
    seen: list[str] = []

    def role(stop: threading.Event) -> int:
        seen.append((folder / "keys" / "consortium.json").read_text())
        if len(seen) == 1:
            (folder / "keys" / "consortium.json").write_text('{"members": 4}')  # the KGC re-issues the kit
            assert stop.wait(5.0), "the change was not noticed"
            return 0
        return len(seen)

    assert run_reloading(folder, role, interval=0.05) == 2
    assert seen == ['{"members": 3}', '{"members": 4}']


def test_an_unrelated_file_does_not_restart_the_role(tmp_path: Path) -> None:
    folder = kit(tmp_path / "k")

    def role(stop: threading.Event) -> bool:
        (folder / "state").mkdir()
        (folder / "state" / "round-0.json").write_text("{}")
        return stop.wait(0.5)

    assert run_reloading(folder, role, interval=0.05) is False
