"""A sealed model file in the real embedded store: the store's blocks, read directly from disk,
hold no plaintext byte pattern of the model (neither the safetensors header nor its floats), while
the same file stored plainly does (the control that shows the search finds what it looks for).
A recipient gets the exact file back from the store; another member gets nothing.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from fedledger.envelope import EnvelopeAccessError, RecipientKeys, open_chunks, seal_pieces, sealed_reader
from fedledger.sm9.encryption_keys import EncryptMasterKey
from fedledger.store.local import LocalStore


def _model(path: Path) -> bytes:
    rng = np.random.default_rng(11)
    save_file({"layer.weight": rng.standard_normal((768, 1024)).astype(np.float32)}, str(path))
    return path.read_bytes()


def _block_bytes(store_root: Path) -> list[bytes]:
    return [p.read_bytes() for p in (store_root / "blocks").rglob("*.data")]


def _patterns(model: bytes) -> list[bytes]:
    header_len = int.from_bytes(model[:8], "little")
    floats = model[8 + header_len :]
    probes = [floats[i : i + 32] for i in range(0, len(floats), len(floats) // 16)]
    return [b'"dtype"', b'"F32"', b"layer.weight", *probes]


def test_store_blocks_hold_no_plaintext(tmp_path: Path, kgc: EncryptMasterKey, members: list[RecipientKeys]) -> None:
    model = _model(tmp_path / "update.safetensors")
    patterns = _patterns(model)

    plain = LocalStore(tmp_path / "plain", durable=False)
    plain.put(tmp_path / "update.safetensors")
    plain_blocks = _block_bytes(tmp_path / "plain")
    assert all(any(p in b for b in plain_blocks) for p in patterns)  # control: the search works

    for aead in ("AES-256-GCM", "SM4-GCM"):
        root = tmp_path / f"sealed-{aead}"
        store = LocalStore(root, durable=False)
        with open(tmp_path / "update.safetensors", "rb") as fin:
            cid = store.put(sealed_reader(seal_pieces(fin, [m.public for m in members[:2]], kgc.public_key, aead=aead)))
        blocks = _block_bytes(root)
        assert len(blocks) > 4
        leaked = [p for p in patterns if any(p in b for b in blocks)]
        assert leaked == []
        with store.open(cid) as reader:
            assert b"".join(open_chunks(reader, members[1])) == model
        with store.open(cid) as reader, pytest.raises(EnvelopeAccessError):
            b"".join(open_chunks(reader, members[2]))


def test_seal_pieces_checks_its_input_before_the_store_reads(kgc: EncryptMasterKey) -> None:
    from fedledger.envelope import EnvelopeFormatError

    with pytest.raises(EnvelopeFormatError):
        seal_pieces(io.BytesIO(b"x"), [], kgc.public_key)
