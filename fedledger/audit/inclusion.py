"""Which of a round's entries the posted record includes, which it leaves out and why: read from the
round manifest in one pass.

The posted record binds the manifest's CID and SM3 digest (``GlobalModelPosted``), so the audit
fetches it (size-capped), checks its digest, and holds it to the chain: the same ledger, round, base
and global model; every ``UpdateSubmitted`` entry of the round listed exactly once; every included
row exactly its ledger entry's leaf; the included leaves giving the posted updates root. Work is
linear in the round's entries. A manifest that is missing, altered or inconsistent is reported as
such (the included set is then unknown), never guessed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fedledger.protocol.manifest import Exclusion, ManifestUnreadable, read_posted_manifest
from fedledger.store import ContentStore

if TYPE_CHECKING:
    from fedledger.chain.client import GlobalModelPosted


@dataclass(frozen=True)
class Inclusion:
    """What a round's manifest says; ``included`` is None when the manifest cannot be trusted."""

    included: tuple[str, ...] | None  # lower-case addresses, sorted
    submitted: int
    excluded: dict[str, Exclusion] = field(default_factory=dict)  # lower-case address -> row
    problem: str = ""
    final: bool = True  # False when the manifest could not be read for a reason that may pass
    rule: dict[str, Any] | None = None  # the manifest's rule (of a secure round, else None)
    secagg: dict[str, Any] | None = None  # the manifest's secure-aggregation record, None: plain round

    def describe(self) -> str:
        if self.included is None:
            return f"the round manifest does not account for the round: {self.problem}"
        left_out = self.submitted - len(self.included)
        if left_out == 0:
            return f"the round manifest includes all {self.submitted} submitted entries; their root matches"
        return (
            f"the round manifest includes {len(self.included)} of the {self.submitted} submitted entries "
            f"({left_out} left out with reasons); their root matches"
        )


def read_inclusion(
    store: ContentStore,
    post: GlobalModelPosted,
    header: tuple[int, str, bytes],
    leaves: Sequence[tuple[str, str, bytes, bytes]],
) -> Inclusion:
    """``header`` is (chain id, contract, round base digest); ``leaves`` are the round's entries as
    (lower-case address, cid, digest, leaf). Returns what the manifest says once it is checked."""
    submitted = len(leaves)

    def refused(problem: str, final: bool = True) -> Inclusion:
        return Inclusion(None, submitted, problem=problem, final=final)

    try:
        manifest = read_posted_manifest(store, post)
    except ManifestUnreadable as exc:
        return refused(exc.problem, final=exc.final)
    chain_id, contract, base_digest = header
    if (manifest.chain_id, manifest.contract, manifest.round, manifest.base_digest) != (
        chain_id,
        contract.lower(),
        post.round,
        base_digest,
    ):
        return refused("it names another ledger, round or base model")
    if (manifest.global_cid, manifest.global_digest) != (post.cid, post.digest):
        return refused("it names another global model than the posted one")
    if not manifest.entry_count == post.update_count == submitted:
        return refused(
            f"it accounts for {manifest.entry_count} entries, the post for {post.update_count}, "
            f"the round has {submitted}"
        )
    by_address = {address: (cid, digest, leaf) for address, cid, digest, leaf in leaves}
    rows = [(r.institution, r.cid) for r in manifest.included] + [(r.institution, r.cid) for r in manifest.excluded]
    if {a for a, _ in rows} != set(by_address) or any(by_address[a][0] != cid for a, cid in rows):
        return refused("it does not list exactly the round's ledger entries")
    for row in manifest.included:
        if by_address[row.institution][1:] != (row.digest, row.leaf):
            return refused(f"its row for {row.institution} is not that institution's ledger entry")
    if manifest.updates_root() != post.updates_root:
        return refused("its included entries do not make the posted updates root")
    return Inclusion(
        tuple(row.institution for row in manifest.included),
        submitted,
        excluded={row.institution: row for row in manifest.excluded},
        rule=manifest.rule if manifest.secagg is not None else None,
        secagg=manifest.secagg,
    )
