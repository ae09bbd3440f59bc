"""The aggregator opens no round that the consortium's privacy budget forbids (issue #12).

The same check every node makes before it signs (``fedledger.protocol.privacy``): on a ledger with
a budget only DP rounds within it; without one only rounds without DP. A refusal is a RoundFailed,
so the driver reports it and retries (k of n may raise the budget meanwhile).
"""

from __future__ import annotations

from fedledger.chain.client import LedgerClient
from fedledger.dp.accountant import RoundPrivacy
from fedledger.dp.errors import BudgetExceeded
from fedledger.protocol.privacy import PrivacyRuleError, check_round_on_ledger
from fedledger.store import ContentStore


def check_can_open(
    ledger: LedgerClient, store: ContentStore, round_index: int, planned: RoundPrivacy | None = None
) -> None:
    from aggregator.driver import RoundFailed  # the driver imports this module

    try:
        check_round_on_ledger(ledger, store, round_index, planned)
    except (PrivacyRuleError, BudgetExceeded) as exc:
        raise RoundFailed(f"round {round_index} not opened: {exc}") from None
