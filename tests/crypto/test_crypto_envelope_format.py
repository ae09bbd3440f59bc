"""The envelope byte format is stable: envelopes sealed once by version 1 and committed as vectors
(tests/crypto/vectors/envelope_v1_golden.json) still open with the current code, and their header
fields sit where docs/crypto.md says they are.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from fedledger.envelope import RecipientKeys, open_chunks
from fedledger.envelope.header import MAGIC, read_header
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key

VECTORS = Path(__file__).parent / "vectors"
GOLDEN = json.loads((VECTORS / "envelope_v1_golden.json").read_text())


@pytest.fixture(scope="module")
def bob() -> RecipientKeys:
    ke = json.loads((Path(__file__).parents[1] / "sm9" / "vectors" / "sm9_encrypt_vectors.json").read_text())
    seed = json.loads((VECTORS / "mlkem768_kat.json").read_text())["vectors"][0]
    master = EncryptMasterKey(int(ke["key_extraction"]["ke"], 16))
    return RecipientKeys(extract_encrypt_key(master, GOLDEN["identity"]), bytes.fromhex(seed["d"] + seed["z"]))


@pytest.mark.parametrize(("aead", "code"), [("AES-256-GCM", 1), ("SM4-GCM", 2)])
def test_committed_v1_envelopes_still_open(bob: RecipientKeys, aead: str, code: int) -> None:
    blob = bytes.fromhex(GOLDEN["envelopes"][aead])
    assert blob[:8] == MAGIC == b"FLEDENV\x00"
    assert blob[8:12] == bytes([1, code, 1, 0])  # version, aead, kem, reserved
    assert int.from_bytes(blob[12:16], "big") == GOLDEN["chunk_size"]
    assert int.from_bytes(blob[39:41], "big") == 1  # recipient count after the 39-byte context
    assert blob[41:43] == (3).to_bytes(2, "big") and blob[43:46] == b"Bob"
    header = read_header(io.BytesIO(blob))
    assert header.suite.name == aead and header.entries[0].key_id == bob.public.key_id
    assert b"".join(open_chunks(io.BytesIO(blob), bob)) == bytes.fromhex(GOLDEN["plaintext_hex"])
