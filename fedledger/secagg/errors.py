"""Errors of secure aggregation: bad input, too few shares, and a member caught lying."""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class SecAggError(FedLedgerError):
    """Base of every error the secure-aggregation library raises on purpose."""


class SecAggInputError(SecAggError, ValueError):
    """A value, message or parameter is malformed or outside what the protocol allows."""


class InsufficientShares(SecAggError):
    """Fewer than t valid shares of some member's secret: the round cannot be unmasked."""


class CheatingMember(SecAggError):
    """A member sent a share or message that contradicts its own published commitment.

    ``member`` names the culprit so the round can exclude it with a reason.
    """

    def __init__(self, member: int, reason: str) -> None:
        super().__init__(f"member {member}: {reason}")
        self.member = member
        self.reason = reason
