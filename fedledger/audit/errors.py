"""The audit API's error kinds, each with the HTTP status it maps to.

The service raises these; the HTTP layer turns them into ``{"error", "message"}`` JSON bodies, so
a client always learns what was wrong (which round, which address, which CID) and never sees a 500
for a question that was merely malformed or about something that does not exist.
"""

from __future__ import annotations

from fedledger.errors import FedLedgerError


class AuditError(FedLedgerError):
    """Base class: ``status`` is the HTTP status, ``code`` a stable machine-readable name."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(AuditError, ValueError):
    """A query or path parameter is malformed (bad address, bad CID, out-of-range number)."""

    status = 422
    code = "invalid_parameter"


class NotFound(AuditError, LookupError):
    """The round, entry, institution or model asked for is not on the ledger."""

    status = 404
    code = "not_found"


class Conflict(AuditError):
    """The thing exists but the question has no answer in its state (e.g. a proof for an
    update that the round record does not include, or a round whose record is not posted yet)."""

    status = 409
    code = "conflict"


class ChainUnavailable(AuditError):
    """The chain's RPC endpoint cannot be reached or answered with an error."""

    status = 503
    code = "chain_unavailable"


class LedgerNotTrusted(AuditError):
    """The chain answers, but what it holds is not the ledger the audit was configured for: no
    contract code at the address, another chain id or deployment block, or a rollback. The audit
    fails closed: an error, never an empty "verified"."""

    status = 503
    code = "ledger_not_trusted"


class NoLedger(LedgerNotTrusted):
    code = "no_ledger"


class WrongChain(LedgerNotTrusted):
    code = "wrong_chain"


class ChainRolledBack(LedgerNotTrusted):
    code = "chain_rolled_back"
