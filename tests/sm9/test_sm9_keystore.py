"""Password-encrypted key files: round trip, 0600, wrong password, tampering, no secrets in the file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fedledger.sm9 import (
    SignMasterKey,
    SignPrivateKey,
    SM9EncodingError,
    SM9KeyError,
    extract_sign_key,
    sign,
    verify,
)
from fedledger.sm9.threshold import KeyShare, ThresholdPublic, split_key

MASTER = SignMasterKey.generate()


def test_master_key_round_trip_is_private_and_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    MASTER.save(path, "correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"{MASTER.secret_scalar():064x}" not in path.read_text().lower()
    loaded = SignMasterKey.load(path, "correct horse")
    assert loaded.secret_scalar() == MASTER.secret_scalar()
    with pytest.raises(SM9KeyError, match="wrong password"):
        SignMasterKey.load(path, "wrong")


def test_user_key_round_trip_signs(tmp_path: Path) -> None:
    key = extract_sign_key(MASTER, "inst:beta")
    path = tmp_path / "beta.key"
    key.save(path, b"pw")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = SignPrivateKey.load(path, b"pw")
    assert loaded.identity == b"inst:beta" and loaded.point == key.point
    assert verify(MASTER.public_key, "inst:beta", b"x", sign(loaded, b"x"))
    with pytest.raises(SM9EncodingError, match="expected a 'sm9-sign-master-key'"):
        SignMasterKey.load(path, b"pw")


def test_share_header_tampering_is_detected(tmp_path: Path) -> None:
    shares, public = split_key(MASTER, "consortium:1:0x01", 2, 3)
    path = tmp_path / "share-1.key"
    shares[0].save(path, "pw")
    loaded = KeyShare.load(path, "pw")
    assert loaded.index == 1 and loaded.point == shares[0].point
    document = json.loads(path.read_text())
    document["public"]["index"] = 2  # pretend to be share 2
    path.write_text(json.dumps(document))
    with pytest.raises(SM9KeyError):
        KeyShare.load(path, "pw")
    public_path = tmp_path / "public.json"
    public.save(public_path)
    assert ThresholdPublic.load(public_path).verification == public.verification


def test_garbage_files_are_encoding_errors(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.write_bytes(b"\xff\x00junk")
    with pytest.raises(SM9EncodingError):
        SignMasterKey.load(path, "pw")
    with pytest.raises(SM9EncodingError):
        SignMasterKey.load(tmp_path / "missing", "pw")


def test_empty_password_refused(tmp_path: Path) -> None:
    with pytest.raises(SM9KeyError):
        MASTER.save(tmp_path / "m.key", "")
