"""Shared keys for the envelope tests: one KGC encryption master key and three members' keys.

Real keys (SM9 extraction and ML-KEM generation), module-scoped only because extraction costs
milliseconds; every test that changes a key makes its own.
"""

from __future__ import annotations

import pytest

from fedledger.envelope.recipients import RecipientKeys
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key


@pytest.fixture(scope="session")
def kgc() -> EncryptMasterKey:
    return EncryptMasterKey.generate()


@pytest.fixture(scope="session")
def members(kgc: EncryptMasterKey) -> list[RecipientKeys]:
    return [RecipientKeys.generate(extract_encrypt_key(kgc, f"hospital-{i}")) for i in range(3)]
