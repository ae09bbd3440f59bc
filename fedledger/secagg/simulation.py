"""An in-process round: every member's phases and the unmasking, for tests, benchmarks and demos.

Why: the real transport (store + ledger) comes with the round protocol; this driver runs the
same messages through their canonical bytes, so whatever it proves holds for the bytes a
network would carry. ``drop_after`` simulates members that vanish after a phase.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from fedledger.secagg.aggregate import Aggregate, recompute_aggregate
from fedledger.secagg.member import Member
from fedledger.secagg.messages import AdvertiseKeys, MaskedInput, Published, Reveal, RoundSetup, ShareKeys

PHASES = ("advertise", "share", "masked")


def run_round(
    setup: RoundSetup,
    values: Mapping[int, np.ndarray],
    value_bound: float,
    *,
    drop_after: Mapping[int, str] | None = None,
    noise: Mapping[int, np.ndarray] | None = None,
) -> tuple[Published, Aggregate, dict[int, Member]]:
    """Run all four phases; ``drop_after[m]`` = the last phase member m completes ("" = none)."""
    drop = dict(drop_after or {})
    members = {m: Member(m, setup) for m in setup.members}

    def alive(m: int, phase: str) -> bool:
        return m not in drop or (drop[m] in PHASES and PHASES.index(drop[m]) >= PHASES.index(phase))

    keys = {m: AdvertiseKeys.from_bytes(members[m].advertise().to_bytes()) for m in members if alive(m, "advertise")}
    shares = {
        m: ShareKeys.from_bytes(members[m].share_keys(keys).to_bytes()) for m in keys if alive(m, "share")
    }
    for m in shares:
        members[m].receive_shares(shares)
    masked = {}
    for m in shares:
        if alive(m, "masked"):
            message = members[m].masked_input(values[m], value_bound, None if noise is None else noise.get(m))
            masked[m] = MaskedInput.from_bytes(message.to_bytes())
    survivors = sorted(masked)
    reveals = {m: Reveal.from_bytes(members[m].reveal(survivors).to_bytes()) for m in survivors}
    published = Published(RoundSetup.from_bytes(setup.to_bytes()), keys, shares, masked, reveals)
    return published, recompute_aggregate(published), members
