"""What the audit checks of a secure-aggregation round without any member's key, and what it cannot.

Every message the round's aggregate rests on is public (the manifest's ``secagg`` section names
each by CID and SM3), so the audit re-reads them all: each join's SM9 signature under its
institution's ledger identity, the setup the joins give, and the unmasking itself
(``recompute_aggregate``): the survivors' masked inputs are the included ledger entries, the
revealed shares rebuild every secret, and the members the manifest names as liars are exactly
the ones the reveals convict; with DP, the rule's parameters are the ones the joins' noise plan and
the setup imply (the same check co-signers make). What it cannot check: a masked input's values (hidden by design),
and the decoded model against the posted one, which needs the sealed base model; the co-signing
members recompute that bit for bit before they sign. The verdicts say so in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fedledger.audit.models import Check
from fedledger.errors import FedLedgerError
from fedledger.protocol.privacy import round_privacy_of
from fedledger.protocol.secagg_noise import check_record_privacy
from fedledger.protocol.secagg_round import Join, SecAggRecord, build_setup, joins_plan
from fedledger.protocol.secagg_rule import SECAGG_RULE_KEY, SecAggRule
from fedledger.secagg.aggregate import recompute_aggregate
from fedledger.secagg.messages import MaskedInput, Published, Reveal, RoundSetup, ShareKeys
from fedledger.sm9 import Signature, SignMasterPublicKey, SM9Error, verify
from fedledger.store import ContentStore, StoreError

MASKED_NOTE = (
    "; a masked input (secure aggregation): its values are masked by design, so this update cannot be "
    "checked on its own (see the round's secure_aggregation check)"
)
NOT_CHECKED = (
    "not checked here: the decoded model against the posted one (it needs the sealed base model; "
    "the co-signing members recompute it bit for bit before signing)"
)


class _Refused(Exception):
    """One thing the audit found wrong; its text is the check's detail."""


def _joins(store: ContentStore, mpk: SignMasterPublicKey, record: SecAggRecord, round_index: int,
           identities: Mapping[str, str]) -> dict[int, Join]:  # fmt: skip
    joins = {}
    for m, ref in record.joins.items():
        join = Join.from_bytes(ref.read(store))
        identity = identities.get(join.institution)
        if join.member != m or join.round_index != round_index or identity is None:
            raise _Refused(f"the join of member {m} names another member, round, or no ledger institution")
        try:
            valid = verify(mpk, identity, join.message(), Signature.from_der(join.signature))
        except SM9Error:
            valid = False
        if not valid:
            raise _Refused(f"member {m}'s join is not signed by {identity}")
        joins[m] = join
    return joins


def secure_round_check(
    store: ContentStore,
    mpk: SignMasterPublicKey,
    round_index: int,
    manifest_rule: Mapping[str, Any],
    secagg: Mapping[str, Any],
    included: Mapping[str, str],
    identities: Mapping[str, str],
) -> Check:
    """``included``: lower-case address -> ledger CID of each included entry; ``identities``: address -> SM9 id."""
    try:
        record = SecAggRecord.from_dict(dict(secagg))
        rule = SecAggRule.from_dict(manifest_rule.get(SECAGG_RULE_KEY))
        joins = _joins(store, mpk, record, round_index, identities)
        setup = RoundSetup.from_bytes(record.setup.read(store))
        shapes = dict(next(iter(joins.values())).parsed_index_map().global_shapes) if joins else {}
        if build_setup(round_index, rule, joins, shapes).digest() != setup.digest():
            raise _Refused("the recorded setup is not the one the signed joins give")
        member_of = {j.institution: m for m, j in joins.items()}
        if sorted(member_of.get(a, -1) for a in included) != sorted(record.survivors):
            raise _Refused("the survivor set is not the set of included entries")
        plan = joins_plan(joins)
        check_record_privacy(round_privacy_of(manifest_rule), setup, plan, record.survivors)
        masked = {}
        for address, cid in included.items():
            masked[member_of[address]] = MaskedInput.from_bytes(store.read_bytes(cid, max_size=64 << 20))
        shares = {m: ShareKeys.from_bytes(ref.read(store)) for m, ref in record.shares.items()}
        reveals = {m: Reveal.from_bytes(ref.read(store)) for m, ref in record.reveals.items()}
        adverts = {m: j.keys for m, j in joins.items()}
        aggregate = recompute_aggregate(Published(setup, adverts, shares, masked, reveals))
    except (_Refused, FedLedgerError, StoreError, ValueError) as exc:
        return Check(ok=False, detail=f"secure aggregation does not check out: {exc}")
    if aggregate.cheaters != record.cheaters:
        return Check(ok=False, detail=f"the manifest names liars {record.cheaters}, the reveals convict "
                                      f"{aggregate.cheaters}")  # fmt: skip
    liars = f"; members caught lying in the reveal phase: {sorted(aggregate.cheaters)}" if aggregate.cheaters else ""
    dropped = f"; dropped after sharing keys: {aggregate.dropped}" if aggregate.dropped else ""
    noise = (
        f"; the rule's DP parameters are what the joins' noise plan (z = {plan.noise_multiplier:g}, clip "
        f"{plan.clip:g}) and the setup imply"
        if plan is not None
        else ""
    )
    return Check(
        ok=True,
        detail=f"checked: {len(joins)} signed joins, the setup they give, and the unmasking of the "
        f"{len(aggregate.survivors)} included masked inputs from the published shares (t = {setup.threshold})"
        f"{dropped}{liars}{noise}; {NOT_CHECKED}",
    )

