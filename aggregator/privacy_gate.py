"""The aggregator opens no round that the consortium's privacy budget forbids (issue #12).

The same check every node makes before it signs (``fedledger.protocol.privacy``): on a ledger with
a budget only DP rounds within it; without one only rounds without DP. A refusal is a RoundFailed,
so the driver reports it and retries (k of n may raise the budget meanwhile).

The configured target (``dp_epsilon`` at ``dp_delta`` over the run's rounds, ``dp_clip``) becomes the
per-round parameters here (:func:`planned_privacy`); the manifest then publishes them, and nodes hold
them to the ledger's budget, never to the aggregator's word.
"""

from __future__ import annotations

from dataclasses import replace

from fedledger.chain.client import LedgerClient
from fedledger.dp.accountant import RoundPrivacy, noise_multiplier_for
from fedledger.dp.distributed import skellam_upper_bound
from fedledger.dp.errors import BudgetExceeded
from fedledger.protocol.privacy import PrivacyRuleError, check_round_on_ledger
from fedledger.protocol.secagg_rule import SecAggRule
from fedledger.store import ContentStore


def check_can_open(
    ledger: LedgerClient, store: ContentStore, round_index: int, planned: RoundPrivacy | None = None
) -> None:
    from aggregator.driver import RoundFailed  # the driver imports this module

    try:
        check_round_on_ledger(ledger, store, round_index, planned)
    except (PrivacyRuleError, BudgetExceeded) as exc:
        raise RoundFailed(f"round {round_index} not opened: {exc}") from None


def planned_privacy(
    epsilon: float | None, delta: float, clip: float, rounds: int, members: int, secagg: SecAggRule | None = None
) -> RoundPrivacy | None:
    """DP parameters of every round of a run whose ``rounds`` rounds together spend ``epsilon`` (every
    member's update, no subsampling); None when the aggregator runs without DP. Plain rounds add central
    Gaussian noise; secure rounds (``secagg``) the members' Skellam shares, planned here with the
    parameters that bound any such round's epsilon before its setup is known (the record then names the
    round's own sensitivity and dimension, which spend less)."""
    if epsilon is None:
        return None
    if secagg is None:
        return RoundPrivacy(clip, noise_multiplier_for(epsilon, rounds, delta), 1.0, max(members, 1))
    bound = skellam_upper_bound(clip, 1.0, secagg.frac_bits, members)
    return replace(bound, noise_multiplier=noise_multiplier_for(epsilon, rounds, delta, like=bound))
