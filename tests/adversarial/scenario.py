"""A federation under attack: one real consortium and a member that submits whatever it likes.

The consortium is ``demo.in_process``'s: a real Anvil, the real contract, the real store, real
training, the real aggregator loop and its HTTP API, and institutions as threads that reach the
aggregator only over HTTP. ``Misbehaving`` is one member's keys and clients used against the rules:
it signs any entry with its own (or a stolen) SM9 key and sends it from its registered address
(``demo.adversary``, which ``fedledger demo --adversary`` runs too).

``play_round`` opens a round, lets the misbehaving member act first, then runs the aggregator with
the honest members; ``RoundReport`` says what became of each entry: included, or rejected and why
(the aggregator's logged reason, or the round manifest's when the ledger publishes one).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from demo.adversary import MisbehavingMember as Misbehaving
from demo.adversary import rejection_reasons
from demo.in_process import InProcessConsortium
from fedledger.audit.service import AuditService
from fedledger.chain.client import LedgerClient
from fedledger.chain.devaccounts import dev_roles
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store

CHEATER = 4  # hospital-5, width 1/8: the misbehaving member unless a test says otherwise
HONEST = (0, 1, 2, 3)


def ledger_of(c: InProcessConsortium) -> LedgerClient:
    return c.nodes[0].ledger


def audit_of(c: InProcessConsortium) -> AuditService:
    mpk = SignMasterPublicKey.load(c.layout.master_public_key)
    return AuditService(ledger_of(c), open_store(c.layout.store_spec), mpk)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def warnings_logged() -> Iterator[list[str]]:
    """Every WARNING+ message any party logs meanwhile (the aggregator names each rejection)."""
    collector = _Collector()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(min(old_level or logging.WARNING, logging.WARNING))
    try:
        yield collector.messages
    finally:
        root.removeHandler(collector)
        root.setLevel(old_level)


@dataclass
class RoundReport:
    """What became of a round's entries, from the ledger, the aggregator and the audit."""

    round: int
    posted: bool
    included: set[str]  # addresses, lower-case
    rejected: dict[str, str]  # address -> the reason given
    verified: dict[str, bool]  # address -> the audit's verdict on the entry
    global_verified: bool
    failures: list[str] = field(default_factory=list)  # the audit's failures for this round

    def assert_rejected(self, address: str, reason: str, honest: Sequence[str]) -> None:
        """The round completed with every honest entry, ``address`` left out with a reason matching
        ``reason`` (a regex), and the audit agrees on all of it."""
        assert self.posted, f"round {self.round} was not posted"
        assert self.global_verified, self.failures
        assert set(honest) <= self.included, (honest, self.included)
        assert all(self.verified[a] for a in honest), self.verified
        assert address not in self.included
        assert address in self.rejected, f"no reason given for {address}: {self.rejected}"
        assert re.search(reason, self.rejected[address], re.IGNORECASE), self.rejected[address]
        if address in self.verified:
            assert not self.verified[address], f"the audit vouches for the rejected entry of {address}"


def _manifest_reasons(c: InProcessConsortium, round_index: int) -> dict[str, str] | None:
    """Exclusions from the round manifest, where the ledger publishes one (None otherwise)."""
    post = ledger_of(c).global_models_posted(round=round_index)[0]
    manifest_cid = getattr(post, "manifest_cid", None)
    if not manifest_cid:
        return None
    from fedledger.protocol.manifest import RoundManifest  # type: ignore[import-not-found,unused-ignore]

    manifest = RoundManifest.from_bytes(open_store(c.layout.store_spec).read_bytes(manifest_cid))
    return {row.institution.lower(): f"{row.code.value}: {row.reason}" for row in manifest.excluded}


def report(c: InProcessConsortium, round_index: int, logged: list[str]) -> RoundReport:
    """The round's outcome as the ledger, the aggregator (``logged``) and the audit tell it."""
    ledger = ledger_of(c)
    events = ledger.updates_submitted(round=round_index)
    posted = bool(ledger.global_models_posted(round=round_index))
    audit = audit_of(c)
    verdicts = {e.institution.lower(): audit.update(round_index, e.institution).verdict for e in events}
    included = {a for a, v in verdicts.items() if v.included is not None and v.included.ok}
    rejected = _manifest_reasons(c, round_index) if posted else None
    if rejected is None:
        rejected = {}
        for e in events:
            said = rejection_reasons(logged, e.institution)
            if said:
                rejected[e.institution.lower()] = said[-1]
    detail = audit.round(round_index)
    failures = [f"{f.check}: {f.detail}" for f in detail.verdict.failures] if posted else []
    return RoundReport(
        round_index,
        posted,
        included,
        rejected,
        {a: v.verified for a, v in verdicts.items()},
        posted and detail.verdict.global_verified,
        failures,
    )


def open_round(c: InProcessConsortium) -> int:
    """Open the round after the last posted one, as the aggregator would; returns its index."""
    ledger = ledger_of(c)
    state = ledger.round_state()
    if not state.open:
        last = ledger.global_models_posted(round=state.round)[0]
        ledger.open_round(dev_roles(len(c.nodes)).aggregator, state.round + 1, last.cid, last.digest)
    return ledger.round_state().round


def play_round(
    c: InProcessConsortium,
    misbehave: Callable[[Misbehaving, int], object],
    *,
    cheater: int = CHEATER,
    honest: Sequence[int] = HONEST,
) -> RoundReport:
    """Open a round, let member ``cheater`` misbehave, run the aggregator with the ``honest`` nodes."""
    r = open_round(c)
    misbehave(Misbehaving(c.nodes[cheater]), r)
    with warnings_logged() as logged:
        c.run_rounds(r + 1, only=list(honest))
    return report(c, r, logged)


def honest_addresses(c: InProcessConsortium, honest: Sequence[int] = HONEST) -> list[str]:
    return [c.nodes[i].account.address.lower() for i in honest]
