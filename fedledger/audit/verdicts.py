"""The checks behind every verdict: content, SM9 signatures, approvals, inclusion, round links.

Entries on the ledger are untrusted input: whatever one entry makes a check raise becomes a failed
check of that entry, with the reason, never an error of the whole answer. Results that depend only
on event data (SM9 verification, which entries a posted record includes) are cached; ``clear()``
drops them when the chain the events came from was rolled back. Content verdicts are cached per
CID by ``ContentChecker``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from eth_utils import to_checksum_address

from fedledger.audit.content import ContentChecker
from fedledger.audit.errors import Conflict
from fedledger.audit.inclusion import Inclusion, read_inclusion
from fedledger.audit.index import LedgerSnapshot, position
from fedledger.audit.lookup import opened_round, posted_round, round_leaves, sm9_identity_of, update_entry
from fedledger.audit.models import (
    Check,
    ExcludedEntry,
    Failure,
    GlobalModelResponse,
    GlobalVerdict,
    UpdateVerdict,
)
from fedledger.audit.params import cid_key
from fedledger.audit.secure_round import MASKED_NOTE, secure_round_check
from fedledger.audit.views import global_entry, hex0x, round_record_model
from fedledger.protocol import RoundRecord
from fedledger.protocol.consortium import consortium_identity as default_consortium_identity
from fedledger.protocol.consortium import normalise_identity
from fedledger.sm9 import Signature, SignMasterPublicKey, SM9Error, verify

if TYPE_CHECKING:
    from fedledger.chain.client import GlobalModelPosted, UpdateSubmitted

UPDATE_CHECKS = ("content", "signature", "included")


def _failed_check(what: str, exc: Exception) -> Check:
    return Check(ok=False, detail=f"{what} could not be checked: {type(exc).__name__}: {exc}")


class Verifier:
    """Judges entries of a ledger snapshot against the store and the KGC's SM9 master public key."""

    def __init__(
        self,
        content: ContentChecker,
        master_public_key: SignMasterPublicKey,
        *,
        consortium_identity: str | None = None,
    ) -> None:
        self.content = content
        self.master_public_key = master_public_key
        self._identity_override = None if consortium_identity is None else normalise_identity(consortium_identity)
        self._signature_checks: dict[tuple[str, bytes, bytes], Check] = {}
        self._inclusions: dict[int, Inclusion] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        """Forget what was derived from events (after a rollback, rounds may hold other entries)."""
        with self._lock:
            self._inclusions.clear()

    def consortium_identity(self, snap: LedgerSnapshot) -> str:
        if self._identity_override is not None:
            return self._identity_override
        return default_consortium_identity(snap.chain_id, snap.contract)

    # ------------------------------------------------------------------ single checks

    def check_sm9(self, identity: str, message: bytes, signature_der: bytes) -> Check:
        """SM9 verification of ``signature_der`` over ``message`` under ``identity`` (cached)."""

        def compute() -> Check:
            try:
                signature = Signature.from_der(signature_der)
            except (SM9Error, ValueError) as exc:
                return Check(ok=False, detail=f"malformed SM9 signature under identity {identity!r}: {exc}")
            try:
                valid = verify(self.master_public_key, identity, message, signature)
            except (SM9Error, ValueError) as exc:
                return Check(ok=False, detail=f"SM9 signature could not be checked under {identity!r}: {exc}")
            if valid:
                return Check(ok=True, detail=f"SM9 signature valid under identity {identity!r}")
            return Check(ok=False, detail=f"SM9 signature does not verify under identity {identity!r}")

        key = (identity, bytes(message), bytes(signature_der))
        with self._lock:
            cached = self._signature_checks.get(key)
        if cached is None:
            cached = compute()  # outside the lock: a pairing takes milliseconds
            with self._lock:
                self._signature_checks[key] = cached
        return cached

    def signature_check(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> Check:
        identity = sm9_identity_of(snap, event)
        if identity is None:
            return Check(ok=False, detail=f"{event.institution} had no SM9 identity on the ledger when it submitted")
        try:
            message = update_entry(snap, event).message()
        except Exception as exc:  # an entry the protocol cannot even encode
            return _failed_check(f"{event.institution}'s entry", exc)
        return self.check_sm9(identity, message, event.sm9_signature)

    def link_check(self, snap: LedgerSnapshot, round: int) -> Check:
        """Round ``round`` starts from round-1's posted global model (round 0: the initial model)."""
        opened = snap.opened[round]
        if round == 0:
            return Check(ok=True, detail=f"round 0 starts from the initial model {opened.base_cid}")
        previous = snap.posted.get(round - 1)
        if previous is None:
            return Check(ok=False, detail=f"round {round - 1} has no posted global model to start from")
        if previous.digest != opened.base_digest:
            return Check(
                ok=False,
                detail=f"base digest {hex0x(opened.base_digest)} differs from round {round - 1}'s "
                f"global digest {hex0x(previous.digest)}",
            )
        if cid_key(previous.cid) != cid_key(opened.base_cid):
            # The aggregator re-seals the previous global model when a reader joined since (the
            # ledger's digest, the plaintext's, still links the rounds): the new file must be there.
            content = self.content.check(opened.base_cid, opened.base_digest)
            return Check(
                ok=content.ok,
                detail=f"starts from round {round - 1}'s global model {previous.cid}, re-sealed as "
                f"{opened.base_cid}: {content.detail}",
            )
        return Check(ok=True, detail=f"starts from round {round - 1}'s global model {previous.cid}")

    def base_check(self, snap: LedgerSnapshot, round: int) -> Check:
        link = self.link_check(snap, round)
        if round > 0 or not link.ok:
            return link  # a later round's base content is the previous global's, checked there
        opened = snap.opened[0]
        content = self.content.check(opened.base_cid, opened.base_digest)
        return Check(ok=content.ok, detail=f"initial model: {content.detail}")

    @staticmethod
    def approvals_check(snap: LedgerSnapshot, post: GlobalModelPosted) -> Check:
        state = snap.membership_at(position(post.meta))
        approvers = [a.lower() for a in post.approvers]
        distinct = set(approvers)
        members = distinct & set(state.active)
        problems = []
        if len(distinct) != len(approvers):
            problems.append("an approver is listed twice")
        outsiders = sorted(distinct - members)
        if outsiders:
            problems.append(f"not active institutions at posting: {', '.join(outsiders)}")
        if len(members) < state.threshold or state.threshold == 0:
            problems.append(f"only {len(members)} member approvals, k = {state.threshold}")
        if problems:
            return Check(ok=False, detail="; ".join(problems))
        return Check(
            ok=True,
            detail=f"{len(members)} distinct member approvals, k = {state.threshold} of {len(state.active)} at posting",
        )

    # ------------------------------------------------------------------ inclusion

    def inclusion(self, snap: LedgerSnapshot, round: int) -> Inclusion | None:
        """Which entries the posted record includes; None while the round is open."""
        post = snap.posted.get(round)
        if post is None:
            return None
        with self._lock:
            cached = self._inclusions.get(round)
        if cached is not None:
            return cached
        # A posted round is closed: its entries can no longer change, so a definitive answer is kept.
        header = (snap.chain_id, snap.contract, snap.opened[round].base_digest)
        result = read_inclusion(self.content.store, post, header, round_leaves(snap, round))
        if result.final:
            with self._lock:
                self._inclusions[round] = result
        return result

    def posted_inclusion(self, snap: LedgerSnapshot, round: int) -> Inclusion:
        inclusion = self.inclusion(snap, round)
        if inclusion is None:
            raise Conflict(f"round {round} has no posted round record yet")
        return inclusion

    def is_included(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> bool | None:
        """Whether the posted record includes the entry; None while open or when it cannot be told."""
        inclusion = self.inclusion(snap, event.round)
        if inclusion is None or inclusion.included is None:
            return None
        return event.institution.lower() in inclusion.included

    # ------------------------------------------------------------------ verdicts

    def update_verdict(self, snap: LedgerSnapshot, event: UpdateSubmitted) -> UpdateVerdict:
        content = self.content.check(event.cid, event.digest)
        signature = self.signature_check(snap, event)
        inclusion = self.inclusion(snap, event.round)
        included: Check | None = None
        if inclusion is not None:
            address = event.institution.lower()
            if inclusion.included is None:
                included = Check(ok=False, detail=f"cannot tell: {inclusion.describe()}")
            elif address in inclusion.included:
                included = Check(ok=True, detail=f"included in round {event.round}'s updates root")
            else:
                row = inclusion.excluded[address]
                included = Check(
                    ok=False, detail=f"left out of round {event.round}'s record: {row.code.value}: {row.reason}"
                )
        if inclusion is not None and inclusion.secagg is not None:
            content = Check(ok=content.ok, detail=content.detail + MASKED_NOTE)
        checks = [c for c in (content, signature, included) if c is not None]
        return UpdateVerdict(
            content=content,
            signature=signature,
            included=included,
            verified=all(c.ok for c in checks),
            final=included is not None,
        )

    def _entries_check(self, snap: LedgerSnapshot, round: int, inclusion: Inclusion) -> tuple[Check, Check]:
        """(updates_root, included_entries) checks of a posted round."""
        if inclusion.included is None:
            return (
                Check(ok=False, detail=inclusion.describe()),
                Check(ok=False, detail="the included entries cannot be determined"),
            )
        included_set = set(inclusion.included)
        bad = [
            f"{e.institution} ({self.signature_check(snap, e).detail})"
            for e in snap.updates.get(round, [])
            if e.institution.lower() in included_set and not self.signature_check(snap, e).ok
        ]
        entries = (
            Check(ok=False, detail="included entries with a bad SM9 signature: " + "; ".join(bad))
            if bad
            else Check(ok=True, detail=f"all {len(included_set)} included entries carry valid SM9 signatures")
        )
        return Check(ok=True, detail=inclusion.describe()), entries

    def global_verdict(self, snap: LedgerSnapshot, round: int) -> GlobalModelResponse:
        opened = opened_round(snap, round)
        post = posted_round(snap, round)
        identity = self.consortium_identity(snap)
        record = RoundRecord.from_posted(snap.chain_id, snap.contract, opened.base_digest, post)
        inclusion = self.posted_inclusion(snap, round)
        root, entries = self._entries_check(snap, round, inclusion)
        try:
            threshold_signature = self.check_sm9(identity, record.message(), post.sm9_threshold_signature)
        except Exception as exc:  # a record the protocol cannot encode (e.g. a malformed CID)
            threshold_signature = _failed_check("the round record's threshold signature", exc)
        verdict_checks = {
            "content": self.content.check(post.cid, post.digest),
            "threshold_signature": threshold_signature,
            "approvals": self.approvals_check(snap, post),
            "updates_root": root,
            "included_entries": entries,
            "base_model": self.base_check(snap, round),
        }
        if inclusion.secagg is not None and inclusion.included is not None:
            verdict_checks["secure_aggregation"] = self._secure_check(snap, round, inclusion)
        verdict = GlobalVerdict(**verdict_checks, verified=all(c.ok for c in verdict_checks.values()))
        included_addresses = excluded = None
        if inclusion.included is not None:
            by_address = {e.institution.lower(): e.institution for e in snap.updates.get(round, [])}
            included_addresses = [by_address[a] for a in inclusion.included]
            excluded = [
                ExcludedEntry(institution=by_address[a], cid=row.cid, code=row.code.value, reason=row.reason)
                for a, row in sorted(inclusion.excluded.items())
            ]
        return GlobalModelResponse(
            entry=global_entry(post),
            record=round_record_model(record, identity),
            included=included_addresses,
            excluded=excluded,
            verdict=verdict,
        )

    def _secure_check(self, snap: LedgerSnapshot, round: int, inclusion: Inclusion) -> Check:
        assert inclusion.secagg is not None and inclusion.included is not None
        cids = {e.institution.lower(): e.cid for e in snap.updates.get(round, [])}
        state = snap.membership_at()
        identities = {**state.sm9_ids, **state.active}
        included = {a: cids[a] for a in inclusion.included}
        rule = inclusion.rule or {}
        return secure_round_check(
            self.content.store, self.master_public_key, round, rule, inclusion.secagg, included, identities
        )

    def round_failures(
        self, snap: LedgerSnapshot, round: int
    ) -> tuple[int, int, GlobalModelResponse | None, list[Failure]]:
        """(updates verified, updates failed, global verdict or None, failures) of one round."""
        failures: list[Failure] = []
        verified = failed = 0
        for event in snap.updates.get(round, []):
            verdict = self.update_verdict(snap, event)
            if verdict.verified:
                verified += 1
            else:
                failed += 1
            for name in UPDATE_CHECKS:
                check: Check | None = getattr(verdict, name)
                if check is not None and not check.ok:
                    failures.append(
                        Failure(
                            kind="update",
                            round=round,
                            institution=to_checksum_address(event.institution),
                            cid=event.cid,
                            check=name,
                            detail=check.detail,
                        )
                    )
        global_model = None
        if round in snap.posted:
            global_model = self.global_verdict(snap, round)
            for name, check in global_model.verdict:
                if isinstance(check, Check) and not check.ok:
                    failures.append(
                        Failure(kind="global", round=round, cid=global_model.entry.cid, check=name, detail=check.detail)
                    )
        else:
            base = self.base_check(snap, round)
            if not base.ok:
                base_cid = snap.opened[round].base_cid
                failures.append(
                    Failure(kind="round", round=round, cid=base_cid, check="base_model", detail=base.detail)
                )
        return verified, failed, global_model, failures
