"""Which of a round's submitted entries the posted round record includes.

The chain stores only the Merkle root of the included entries (leaves sorted by institution
address), not the list: the aggregator may rightly leave out an update that fails validation.
The auditor recovers the list as the subset of the round's ``UpdateSubmitted`` entries whose
leaves give the posted root, trying the full set first and then ever smaller subsets. SM3 being
collision resistant, at most one subset matches. The search is bounded (``max_candidates``); a
round with many submissions and many exclusions is reported as undetermined rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

from fedledger.protocol import merkle_root

DEFAULT_MAX_CANDIDATES = 1 << 16


@dataclass(frozen=True)
class Inclusion:
    """The outcome of the search: ``included`` (sorted addresses) or None when no subset matched."""

    included: tuple[str, ...] | None
    submitted: int
    candidates_tried: int
    exhaustive: bool  # every subset was tried (meaningful when nothing matched)

    def describe(self) -> str:
        if self.included is None:
            searched = "no subset" if self.exhaustive else f"none of the {self.candidates_tried} largest subsets"
            return f"{searched} of the round's {self.submitted} submitted entries yields the posted updates root"
        left_out = self.submitted - len(self.included)
        if left_out == 0:
            return f"root recomputed from all {self.submitted} submitted entries matches"
        return (
            f"root recomputed from {len(self.included)} of the {self.submitted} submitted entries "
            f"matches ({left_out} left out)"
        )


def find_included(
    leaves: list[tuple[str, bytes]], root: bytes, *, max_candidates: int = DEFAULT_MAX_CANDIDATES
) -> Inclusion:
    """``leaves`` are (lower-case address, leaf) pairs sorted by address; find the subset whose root
    is ``root``, largest subsets first."""
    n = len(leaves)
    tried = 0
    for size in range(n, -1, -1):
        for subset in combinations(range(n), size):
            if tried >= max_candidates:
                return Inclusion(None, n, tried, exhaustive=False)
            tried += 1
            if merkle_root([leaves[i][1] for i in subset]) == root:
                return Inclusion(tuple(leaves[i][0] for i in subset), n, tried, exhaustive=True)
    return Inclusion(None, n, tried, exhaustive=True)
