"""Real keys for the sealing tests: a KGC encryption master key, three members and the aggregator."""

from __future__ import annotations

import pytest

from fedledger.envelope.recipients import RecipientKeys
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key


@pytest.fixture(scope="session")
def kgc() -> EncryptMasterKey:
    return EncryptMasterKey.generate()


@pytest.fixture(scope="session")
def readers(kgc: EncryptMasterKey) -> dict[str, RecipientKeys]:
    names = ["inst:a", "inst:b", "inst:c", "aggregator"]
    return {n: RecipientKeys.generate(extract_encrypt_key(kgc, n)) for n in names}
