"""The atomic write helper: all or nothing, no temp files left, secret modes kept."""

from __future__ import annotations

import os
import stat

import pytest

from fedledger.fileio import SECRET_MODE, atomic_write_bytes, atomic_writer


def test_write_replaces_content_and_sets_mode(tmp_path):
    target = tmp_path / "key.json"
    target.write_bytes(b"old")
    atomic_write_bytes(target, b"new", SECRET_MODE)
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == SECRET_MODE
    assert os.listdir(tmp_path) == ["key.json"]


def test_failure_mid_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model.safetensors"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as fh:
        fh.write(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_secret_mode_survives_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        path = atomic_write_bytes(tmp_path / "share.json", b"s", SECRET_MODE)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == SECRET_MODE
