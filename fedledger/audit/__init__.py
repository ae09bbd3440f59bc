"""The audit REST API: read-only verdicts over the ledger, the content store and SM9 signatures.

``AuditService`` does the reading and checking; ``create_app(service)`` is the FastAPI app over it;
``open_audit_service`` builds a service from a deployment file (or RPC URL + contract), a store
spec and the KGC's master public key, as the CLI does. FastAPI and web3 load only when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fedledger.audit.errors import (
    AuditError,
    ChainRolledBack,
    ChainUnavailable,
    Conflict,
    InvalidParameter,
    LedgerNotTrusted,
    NoLedger,
    NotFound,
    WrongChain,
)

if TYPE_CHECKING:
    from fedledger.audit.api import create_app
    from fedledger.audit.service import AuditService
    from fedledger.audit.setup import open_audit_service

__all__ = [
    "AuditError",
    "AuditService",
    "ChainRolledBack",
    "ChainUnavailable",
    "Conflict",
    "InvalidParameter",
    "LedgerNotTrusted",
    "NoLedger",
    "NotFound",
    "WrongChain",
    "create_app",
    "open_audit_service",
]

_LAZY = {
    "AuditService": "fedledger.audit.service",
    "create_app": "fedledger.audit.api",
    "open_audit_service": "fedledger.audit.setup",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fedledger.audit' has no attribute {name!r}")
