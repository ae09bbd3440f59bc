"""Errors raised by fedledger.sm9. Messages never include secret values."""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class SM9Error(FedLedgerError):
    """Base class for every SM9 error."""


class SM9EncodingError(SM9Error, ValueError):
    """Malformed bytes: a DER signature, a PEM key, a point encoding, a share file."""


class SM9KeyError(SM9Error):
    """A key cannot be produced or used (e.g. t1 = 0 during extraction, wrong password)."""


class SM9ThresholdError(SM9Error):
    """A threshold signing session cannot proceed (too few signers, bad commitments, nonce reuse)."""


class SM9CheatingSignersError(SM9ThresholdError):
    """One or more partial signatures failed the public check; ``indices`` names the shares."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = sorted(indices)
        super().__init__(f"partial signatures from share(s) {self.indices} failed verification")
