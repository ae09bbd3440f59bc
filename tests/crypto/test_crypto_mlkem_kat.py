"""ML-KEM-768 as ``cryptography`` 50 provides it, against FIPS 203 known answers.

Vectors: tests/crypto/vectors/mlkem768_kat.json, three entries of kat_MLKEM_768.rsp from the
cryptography-vectors 50.0.2 package. Key generation from the seed d || z must give the published
encapsulation key; decapsulation must give the published secret, including the implicit-rejection
secret for a malformed ciphertext.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem

from fedledger.envelope.recipients import MLKEM_PUBLIC_BYTES, mlkem_key_id

KAT = json.loads((Path(__file__).parent / "vectors" / "mlkem768_kat.json").read_text())["vectors"]


@pytest.mark.parametrize("vector", KAT, ids=lambda v: f"count{v['count']}")
def test_keygen_and_decapsulation_match_fips203(vector: dict) -> None:
    key = mlkem.MLKEM768PrivateKey.from_seed_bytes(bytes.fromhex(vector["d"] + vector["z"]))
    public = key.public_key().public_bytes_raw()
    assert len(public) == MLKEM_PUBLIC_BYTES
    assert public.hex() == vector["pk"]
    assert key.decapsulate(bytes.fromhex(vector["ct"])).hex() == vector["ss"]
    assert key.decapsulate(bytes.fromhex(vector["ct_n"])).hex() == vector["ss_n"]  # implicit rejection


def test_key_ids_differ_per_key() -> None:
    ids = {mlkem_key_id(bytes.fromhex(v["pk"])) for v in KAT}
    assert len(ids) == len(KAT)
