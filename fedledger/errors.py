"""The one root of every error fedledger raises on purpose.

A CLI command or a role loop catches ``FedLedgerError`` in one clause (as httpx's ``HTTPError``):
anything else that escapes is a bug, not bad input. Each sub-package keeps its own subclasses.
"""

from __future__ import annotations


class FedLedgerError(Exception):
    """Base of every error fedledger raises for bad input, bad state or an unreachable service."""
