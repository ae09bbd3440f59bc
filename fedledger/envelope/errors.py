"""Errors raised by fedledger.envelope. Messages never include keys or plaintext."""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class EnvelopeError(FedLedgerError):
    """Base class of every envelope error."""


class EnvelopeFormatError(EnvelopeError, ValueError):
    """The bytes are not an envelope this version reads (magic, version, lengths, field values)."""


class EnvelopeAccessError(EnvelopeError):
    """None of the caller's keys opens a wrapped content key (not a recipient, or the entry was altered)."""


class EnvelopeIntegrityError(EnvelopeError):
    """A chunk failed authentication: altered, reordered, duplicated, truncated or extended."""


class EnvelopeKeyError(EnvelopeError):
    """A recipient key or key file is malformed or does not match its identity."""
