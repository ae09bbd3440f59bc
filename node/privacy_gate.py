"""A node signs no round that the consortium's privacy budget forbids (issue #12): the check the
aggregator makes before opening (``fedledger.protocol.privacy``), on the manifest's DP parameters."""

from __future__ import annotations

from fedledger.chain.client import LedgerClient
from fedledger.dp.accountant import RoundPrivacy
from fedledger.dp.errors import BudgetExceeded
from fedledger.errors import FedLedgerError
from fedledger.protocol.privacy import PrivacyRuleError, check_round_on_ledger
from fedledger.store import ContentStore


def privacy_refusal(
    ledger: LedgerClient, store: ContentStore, round_index: int, planned: RoundPrivacy | None
) -> str | None:
    """Why the round must not be signed under the ledger's privacy budget, or None if it may."""
    try:
        check_round_on_ledger(ledger, store, round_index, planned)
    except (PrivacyRuleError, BudgetExceeded) as exc:
        return f"round {round_index} breaks the consortium's privacy budget: {exc}"
    except FedLedgerError as exc:
        return f"round {round_index}: the privacy budget cannot be checked: {exc}"
    return None
