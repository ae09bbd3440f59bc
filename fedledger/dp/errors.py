"""Errors of differential privacy: bad parameters and a round that would overspend the budget."""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class DPError(FedLedgerError):
    """Base of every error the differential-privacy library raises on purpose."""


class DPParameterError(DPError, ValueError):
    """A privacy parameter is missing, malformed or outside its range."""


class BudgetExceeded(DPError):
    """The next round would take the cumulative epsilon past the consortium's budget."""
