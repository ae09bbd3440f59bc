"""The node refuses a global model whose bytes differ from the ledger's digest, with its own error.

Model files are sealed: the store holds envelopes, and the node opens them with its reader keys.
"""

from __future__ import annotations

import pytest

from fedledger.chain.errors import BaseModelMismatch
from fedledger.digests import sm3
from fedledger.envelope import RecipientKeys
from fedledger.errors import FedLedgerError
from fedledger.protocol.model_files import ModelVault
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key
from fedledger.store import LocalStore
from node.training_step import UnusableGlobalModel, fetch_verified_model


@pytest.fixture
def vault(tmp_path) -> ModelVault:
    kgc = EncryptMasterKey.generate()
    keys = RecipientKeys.generate(extract_encrypt_key(kgc, "inst:node"))
    return ModelVault(LocalStore(tmp_path / "store"), kgc.public_key, keys)


def _put(vault: ModelVault, tmp_path, data: bytes) -> str:
    (tmp_path / "plain").write_bytes(data)
    assert vault.keys is not None
    return vault.put(tmp_path / "plain", [vault.keys.public])[0]


def test_model_differing_from_the_ledger_digest_is_refused_and_not_kept(vault, tmp_path):
    cid = _put(vault, tmp_path, b"the model the store hands out")
    dest = tmp_path / "round-1" / "global.safetensors"
    with pytest.raises(UnusableGlobalModel, match="differs from the ledger's") as caught:
        fetch_verified_model(vault, cid, sm3(b"the model the ledger recorded"), dest)
    assert isinstance(caught.value, FedLedgerError)
    assert not isinstance(caught.value, BaseModelMismatch)  # one meaning per name
    assert not dest.exists()


def test_model_matching_the_ledger_digest_is_kept(vault, tmp_path):
    data = b"the model the ledger recorded"
    dest = tmp_path / "global.safetensors"
    assert fetch_verified_model(vault, _put(vault, tmp_path, data), sm3(data), dest) == dest
    assert dest.read_bytes() == data


def test_a_node_without_reader_keys_gets_a_clear_refusal(vault, tmp_path):
    data = b"sealed for someone"
    cid = _put(vault, tmp_path, data)
    keyless = ModelVault(vault.store, vault.master_public, None)
    with pytest.raises(UnusableGlobalModel, match="holds no reader keys"):
        fetch_verified_model(keyless, cid, sm3(data), tmp_path / "out")
