"""Errors of the consortium's TLS material (certificates, keys, the address binding)."""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class TLSMaterialError(FedLedgerError):
    """A certificate or TLS key is missing, unreadable, from another CA, or bound to another member."""
