"""Every error family fedledger raises on purpose shares one root, so one clause catches them all."""

from __future__ import annotations

import pytest

from fedledger.audit.errors import AuditError
from fedledger.chain.errors import LedgerError
from fedledger.chain.keyfile import KeyFileError
from fedledger.config_files import ConfigError
from fedledger.errors import FedLedgerError
from fedledger.fl.aggregation import AggregationError
from fedledger.fl.data import DatasetError
from fedledger.fl.update_format import ModelFileError
from fedledger.fl.validation import UpdateRejected
from fedledger.sm9.errors import SM9Error
from fedledger.store.errors import StoreError


@pytest.mark.parametrize(
    "family",
    [AuditError, LedgerError, KeyFileError, ConfigError, AggregationError, DatasetError, ModelFileError,
     UpdateRejected, SM9Error, StoreError],
)
def test_family_derives_from_root(family):
    assert issubclass(family, FedLedgerError)
