"""The privacy a training run has spent, from the ledger alone: each posted round's epsilon and the
cumulative epsilon, recomputed by the accountant from the rounds' recorded DP parameters, next to
the consortium's budget (the latest ``PrivacyBudgetChanged`` event, at deployment or by k of n).

Accounting is at the current budget's delta; rounds without DP (e.g. before a budget was set) are
listed and spend nothing an accountant can express (see ``fedledger.protocol.privacy``).
"""

from __future__ import annotations

from collections.abc import Mapping

from fedledger.audit.index import LedgerSnapshot, Position, position
from fedledger.audit.models import PrivacyAccountModel, PrivacyBudgetModel, RoundEpsilon
from fedledger.audit.views import event_ref
from fedledger.chain.approvals import PrivacyBudgetSetting
from fedledger.dp.accountant import RoundPrivacy, epsilon
from fedledger.protocol.manifest import ManifestUnreadable, read_posted_manifest
from fedledger.protocol.privacy import PrivacyRuleError, round_privacy_of
from fedledger.store import ContentStore

# What a posted round's manifest says about DP: its parameters, None (no DP), or why it is unknown.
RoundPrivacyRecord = RoundPrivacy | None | str


def budget_of(snapshot: LedgerSnapshot, before: Position | None = None) -> PrivacyBudgetModel | None:
    """The budget after every indexed event (or just before the event at ``before``); None when
    the ledger sets none."""
    changes = [
        e
        for e in snapshot.membership
        if e.name == "PrivacyBudgetChanged" and (before is None or position(e.meta) < before)
    ]
    if not changes:
        return None
    last = changes[-1]
    setting = PrivacyBudgetSetting(int(last.args["epsilonMicro"]), int(last.args["deltaPico"]))
    if not setting.is_set:
        return None
    return PrivacyBudgetModel(epsilon=setting.epsilon, delta=setting.delta, set_at=event_ref(last.meta))


def round_privacy_records(snapshot: LedgerSnapshot, store: ContentStore) -> dict[int, RoundPrivacyRecord]:
    """What each posted round's manifest says about DP (the rule's ``dp`` member), or why it is unknown."""
    records: dict[int, RoundPrivacyRecord] = {}
    for round_index, post in snapshot.posted.items():
        try:
            manifest = read_posted_manifest(store, post)
            if manifest.round != round_index:
                raise ManifestUnreadable("the manifest names another round")
            records[round_index] = round_privacy_of(manifest.rule)
        except ManifestUnreadable as exc:
            records[round_index] = f"round {round_index}: {exc.problem}"
        except PrivacyRuleError as exc:
            records[round_index] = f"round {round_index}: {exc}"
    return records


def privacy_account(snapshot: LedgerSnapshot, records: Mapping[int, RoundPrivacyRecord]) -> PrivacyAccountModel:
    """``records`` maps each posted round to what its manifest says about DP."""
    budget = budget_of(snapshot)
    spent: list[RoundPrivacy] = []
    rows: list[RoundEpsilon] = []
    readable = True
    for round_index in sorted(records):
        record = records[round_index]
        if isinstance(record, str):
            readable = False
            rows.append(RoundEpsilon(round=round_index, dp=None, epsilon=None, cumulative_epsilon=None, detail=record))
        elif record is None:
            post = snapshot.posted.get(round_index)
            under_budget = post is not None and budget_of(snapshot, position(post.meta)) is not None
            readable = readable and not under_budget
            detail = "no DP, although the ledger's privacy budget requires it" if under_budget else "no DP"
            rows.append(
                RoundEpsilon(round=round_index, dp=None, epsilon=None, cumulative_epsilon=None, detail=detail)
            )
        elif budget is None:
            readable = False
            rows.append(
                RoundEpsilon(
                    round=round_index,
                    dp=record.to_dict(),
                    epsilon=None,
                    cumulative_epsilon=None,
                    detail="DP parameters recorded, but the ledger sets no budget (no delta to account at)",
                )
            )
        else:
            spent.append(record)
            rows.append(
                RoundEpsilon(
                    round=round_index,
                    dp=record.to_dict(),
                    epsilon=epsilon([record], budget.delta),
                    cumulative_epsilon=epsilon(spent, budget.delta),
                    detail=f"{record.mechanism} noise, recomputed from the recorded parameters",
                )
            )
    total = epsilon(spent, budget.delta) if budget is not None else 0.0
    return PrivacyAccountModel(
        budget=budget,
        spent_epsilon=total,
        remaining_epsilon=None if budget is None else budget.epsilon - total,
        within_budget=readable and (budget is None or total <= budget.epsilon),
        rounds=rows,
    )
