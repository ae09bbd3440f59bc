"""Errors of the round protocol's shared parts (fedledger.protocol)."""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class ProtocolError(FedLedgerError):
    """Base of fedledger.protocol's deliberate errors."""


class SealedModelError(ProtocolError):
    """A model file cannot be sealed for its readers or opened by this party."""


class ModelDigestMismatch(SealedModelError):
    """An opened model file's plaintext SM3 differs from the digest the ledger entry signs."""


class NoReaderCard(SealedModelError):
    """The roster names no usable reader card for an identity (unknown, or no ML-KEM key registered)."""
