"""Secure aggregation and DP errors share the project's one error root."""

from __future__ import annotations

import pytest

from fedledger.dp.errors import BudgetExceeded, DPError, DPParameterError
from fedledger.errors import FedLedgerError
from fedledger.secagg.aggregate import AggregateMismatch
from fedledger.secagg.errors import CheatingMember, InsufficientShares, SecAggError, SecAggInputError


@pytest.mark.parametrize(
    "family",
    [SecAggError, SecAggInputError, InsufficientShares, CheatingMember, AggregateMismatch, DPError,
     DPParameterError, BudgetExceeded],
)
def test_family_derives_from_root(family):
    assert issubclass(family, FedLedgerError)


def test_cheating_member_names_the_member_in_one_line():
    error = CheatingMember(7, "revealed a share that contradicts its commitment")
    assert error.member == 7 and str(error) == "member 7: revealed a share that contradicts its commitment"
