"""Update and global model files: round trip, no pickle, deterministic bytes, tamper detection."""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys

import pytest
import torch

from fedledger.digests import sm3, sm3_file
from fedledger.fl import (
    ModelFileError,
    ModelSpec,
    UpdateMetadata,
    extract_submodel,
    global_digest,
    initial_global_state,
    load_client_update,
    load_global,
    load_update,
    save_global,
    save_update,
)

SPEC = ModelSpec("cnn", (1, 8, 8), 10, (8, 16))


def _update(tmp_path):
    g = initial_global_state(SPEC, 1)
    sub, index_map = extract_submodel(g, SPEC, 0.25, "rolling", 6)
    meta = UpdateMetadata("hospital-2", 6, 123, bytes.fromhex("ab" * 32), index_map, "rolling")
    path = tmp_path / "update.safetensors"
    digest = save_update(path, sub, meta)
    return g, sub, meta, path, digest


def test_update_round_trip(tmp_path):
    _, sub, meta, path, digest = _update(tmp_path)
    assert digest == sm3_file(path)
    state, loaded = load_update(path)
    assert loaded == meta
    assert loaded.width_rate == 0.25
    assert loaded.mapping_digest == meta.index_map.digest()
    assert set(state) == set(sub)
    assert all(torch.equal(state[n], sub[n]) and state[n].dtype == sub[n].dtype for n in sub)
    update = load_client_update(path)
    assert (update.institution, update.num_samples, update.base_digest) == ("hospital-2", 123, meta.base_digest)


def test_update_file_is_plain_safetensors_with_json_header(tmp_path):
    _, sub, meta, path, _ = _update(tmp_path)
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])  # an independent parse of the safetensors layout
    info = json.loads(header["__metadata__"]["fedledger"])
    assert info["mapping_digest"] == meta.index_map.digest().hex()
    assert info["num_samples"] == 123 and info["width_rate"] == 0.25
    assert set(header) - {"__metadata__"} == set(sub)
    assert b"\x80\x04" not in raw[:8]  # not a pickle protocol header


def test_loading_never_unpickles(tmp_path, monkeypatch):
    _, _, _, path, _ = _update(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used while loading an update")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    state, meta = load_update(path)
    assert meta.institution == "hospital-2" and state


def test_pickle_file_is_refused(tmp_path):
    path = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(1)}, path)  # a pickle-based file
    with pytest.raises(ModelFileError, match=r"evil\.safetensors"):
        load_update(path)


def test_tampered_mapping_digest_is_detected(tmp_path):
    _, _, _, path, _ = _update(tmp_path)
    raw = bytearray(path.read_bytes())
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = raw[8 : 8 + header_len].decode()
    # shift one index of the stored map: same length, so the header size stays valid
    start = header.index('\\"indices\\":[[') + len('\\"indices\\":[[')
    digit = header[start]
    header = header[:start] + ("7" if digit != "7" else "6") + header[start + 1 :]
    raw[8 : 8 + header_len] = header.encode()
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=r"mapping digest|index"):
        load_update(path)


def test_missing_file_and_wrong_kind(tmp_path):
    with pytest.raises(ModelFileError, match=r"cannot read"):
        load_update(tmp_path / "absent.safetensors")
    g = initial_global_state(SPEC, 0)
    save_global(tmp_path / "g.safetensors", g, SPEC, 0)
    with pytest.raises(ModelFileError, match=r"not an update file"):
        load_update(tmp_path / "g.safetensors")


def test_global_round_trip_and_digest(tmp_path):
    g = initial_global_state(SPEC, 3)
    path = tmp_path / "global.safetensors"
    digest = save_global(path, g, SPEC, 4)
    assert digest == sm3_file(path) == global_digest(g, SPEC, 4) == sm3(path.read_bytes())
    state, info = load_global(path)
    assert info.round_index == 4 and info.spec == SPEC
    assert all(torch.equal(state[n], g[n]) for n in g)


def test_global_bytes_identical_across_processes(tmp_path):
    # Hash-map order in headers differs between processes unless the format avoids it.
    script = (
        "import sys; from fedledger.fl import *; "
        "spec = ModelSpec('mlp', (4,), 2, (8,)); "
        "sys.stdout.write(save_global(sys.argv[1], initial_global_state(spec, 5), spec, 2).hex())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"g{i}.st")], check=True, capture_output=True, text=True
        ).stdout
        for i in range(2)
    }
    assert len(digests) == 1
    assert (tmp_path / "g0.st").read_bytes() == (tmp_path / "g1.st").read_bytes()


def test_global_shape_disagreeing_with_spec_is_refused(tmp_path):
    g = initial_global_state(SPEC, 3)
    g["head.bias"] = torch.zeros(11)
    save_global(tmp_path / "g.st", g, SPEC, 0)
    with pytest.raises(ModelFileError, match=r"head\.bias"):
        load_global(tmp_path / "g.st")
