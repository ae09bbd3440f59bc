"""The node refuses a global model whose bytes differ from the ledger's digest, with its own error."""

from __future__ import annotations

import pytest

from fedledger.chain.errors import BaseModelMismatch
from fedledger.digests import sm3
from fedledger.errors import FedLedgerError
from fedledger.store import LocalStore
from node.training_step import UnusableGlobalModel, fetch_verified_model


def test_model_differing_from_the_ledger_digest_is_refused_and_not_kept(tmp_path):
    store = LocalStore(tmp_path / "store")
    cid = store.put(b"the model the store hands out")
    dest = tmp_path / "round-1" / "global.safetensors"
    with pytest.raises(UnusableGlobalModel, match="differs from the ledger's") as caught:
        fetch_verified_model(store, cid, sm3(b"the model the ledger recorded"), dest)
    assert isinstance(caught.value, FedLedgerError)
    assert not isinstance(caught.value, BaseModelMismatch)  # one meaning per name
    assert not dest.exists()


def test_model_matching_the_ledger_digest_is_kept(tmp_path):
    store = LocalStore(tmp_path / "store")
    data = b"the model the ledger recorded"
    dest = tmp_path / "global.safetensors"
    assert fetch_verified_model(store, store.put(data), sm3(data), dest) == dest
    assert dest.read_bytes() == data
