"""A co-signing node's recomputation of a secure round, from the manifest's published messages.

The node runs ``compute_secure_round`` (the aggregator's own function) on the ledger's entries and
the messages the manifest names, so it reaches the same inclusions, exclusions, survivor set,
named liars and global model bytes, or it refuses to sign; and the record's survivor set must be
the one this node was shown when it revealed (an aggregator that shows members different sets
cannot also get them to sign).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from fedledger.fl import global_digest, load_global
from fedledger.protocol.manifest import RoundManifest
from fedledger.protocol.momentum_history import before_previous_model
from fedledger.protocol.round_check import AggregationRule, LedgerUpdate, RoundComputation
from fedledger.protocol.secagg_round import SecAggRecord, SecureRoundError, compute_secure_round
from node.training_step import UnusableGlobalModel

if TYPE_CHECKING:
    from node.participant import NodeContext

REVEALED_FOR = "secagg-revealed-for.json"  # in the round's folder: the survivor set this node revealed for


def recompute_secure_round(
    ctx: NodeContext,
    round_index: int,
    base_path: Path,
    updates: list[LedgerUpdate],
    manifest: RoundManifest,
) -> tuple[RoundComputation, bytes]:
    """The secure round as the manifest's messages give it, and the global model digest that yields.

    With DP the noise is calibrated to the rule's clip, which only the members enforce (before
    masking): a rule naming another clip than this node clipped to is refused, and
    ``compute_secure_round`` refuses DP parameters the members' joins and the setup do not imply."""
    if ctx.rule.secagg is None or manifest.secagg is None:
        raise SecureRoundError("the manifest of a secure round must carry its secagg record")
    rule = AggregationRule.from_dict(manifest.rule)
    if rule.privacy is not None and rule.privacy.clip != ctx.dp_clip:
        raise SecureRoundError(
            f"the rule's DP clip {rule.privacy.clip:g} is not the {ctx.dp_clip:g} this node clipped its update to"
        )
    state, meta = load_global(base_path)
    if meta.spec is None:
        raise UnusableGlobalModel(f"{base_path}: global model carries no model spec")
    record = SecAggRecord.from_dict(manifest.secagg)
    revealed = base_path.parent / REVEALED_FOR  # the base model sits in the round's folder
    if revealed.exists() and json.loads(revealed.read_text(encoding="utf-8")) != sorted(record.survivors):
        raise SecureRoundError(
            f"this node revealed for the survivor set {revealed.read_text(encoding='utf-8')}, "
            f"the record names {sorted(record.survivors)}"
        )
    computation, _ = compute_secure_round(
        ctx.store,
        ctx.master_public_key,
        ctx.consortium,
        round_index,
        state,
        updates,
        ctx.rule.secagg,
        record,
        dp=rule,
        before_previous=before_previous_model(ctx.ledger, ctx.vault, round_index, base_path.parent, rule),
        spec=meta.spec,
    )
    return computation, global_digest(computation.state, meta.spec, round_index + 1)
