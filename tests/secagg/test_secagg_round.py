"""Whole rounds over real mixed-width sub-models: exact equality with plain alignment, dropouts."""

from __future__ import annotations

import numpy as np
import pytest

from fedledger.secagg.aggregate import AggregateMismatch, recompute_aggregate, verify_aggregate
from fedledger.secagg.errors import InsufficientShares
from fedledger.secagg.simulation import run_round
from tests.secagg.secagg_cases import BOUND, build_case


def _bits(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint32)


def test_widths_one_half_quarter_decode_to_plain_alignment_bit_for_bit():
    case = build_case()
    assert {case.maps[m].width_rate for m in case.maps} == {1.0, 0.5, 0.25}
    published, aggregate, _ = run_round(case.setup, case.values, BOUND)
    secure = aggregate.mean(case.previous)
    plain = case.plain_alignment(case.setup.members)
    assert np.array_equal(_bits(secure), _bits(plain))
    # and the sum was not trivially the plaintext: uploads are the sub-model size, masked
    for m, masked in published.masked.items():
        assert masked.values.size == case.setup.positions[m].size


def test_entries_nobody_covers_keep_the_previous_value():
    case = build_case(members={2: (0.5, "static", 3), 3: (0.25, "static", 5), 4: (0.5, "rolling", 2)}, threshold=2)
    _, aggregate, _ = run_round(case.setup, case.values, BOUND)
    secure = aggregate.mean(case.previous)
    uncovered = aggregate.coverage == 0
    assert uncovered.any()
    assert np.array_equal(secure[uncovered], case.previous[uncovered])
    assert np.array_equal(_bits(secure), _bits(case.plain_alignment([2, 3, 4])))


@pytest.mark.parametrize("dropped", [[2], [1, 4]], ids=["one-dropout", "n-minus-t-dropouts"])
def test_round_completes_with_dropouts_after_sharing_keys(dropped):
    case = build_case(threshold=3)  # n = 5, t = 3: tolerates n - t = 2 dropouts
    published, aggregate, _ = run_round(case.setup, case.values, BOUND, drop_after={m: "share" for m in dropped})
    survivors = [m for m in case.setup.members if m not in dropped]
    assert aggregate.survivors == survivors and aggregate.dropped == dropped
    assert np.array_equal(_bits(aggregate.mean(case.previous)), _bits(case.plain_alignment(survivors)))
    # the dropped members' pairwise keys were rebuilt, their self-mask seeds never revealed
    for reveal in published.reveals.values():
        assert set(reveal.key_shares) == set(dropped)
        assert not set(reveal.seed_shares) & set(dropped)


def test_member_silent_from_the_start_is_simply_left_out():
    case = build_case(threshold=3)
    _, aggregate, _ = run_round(case.setup, case.values, BOUND, drop_after={3: "advertise", 5: ""})
    assert aggregate.survivors == [1, 2, 4] and aggregate.dropped == []
    assert np.array_equal(_bits(aggregate.mean(case.previous)), _bits(case.plain_alignment([1, 2, 4])))


def test_more_than_n_minus_t_dropouts_fail_with_a_named_reason():
    case = build_case(threshold=3)
    with pytest.raises(InsufficientShares, match="only 2 survivors, threshold is 3"):
        run_round(case.setup, case.values, BOUND, drop_after={1: "share", 2: "share", 3: "share"})


def test_a_node_recomputes_the_aggregate_and_refuses_a_wrong_one():
    case = build_case()
    published, aggregate, _ = run_round(case.setup, case.values, BOUND, drop_after={4: "share"})
    again = verify_aggregate(published, aggregate.ring_sum.copy())
    assert np.array_equal(again.ring_sum, aggregate.ring_sum)
    skewed = aggregate.ring_sum.copy()
    skewed[17] += 1  # one ring unit on one entry: a quantum of skew
    with pytest.raises(AggregateMismatch):
        verify_aggregate(published, skewed)


def test_published_messages_have_stable_digests_and_recompute_from_bytes_alone():
    case = build_case()
    published, aggregate, _ = run_round(case.setup, case.values, BOUND)
    digests = published.digests()
    assert len(digests) == 1 + 4 * len(case.setup.members)
    assert all(len(d) == 32 for d in digests.values())
    assert published.digests() == digests
    assert np.array_equal(recompute_aggregate(published).ring_sum, aggregate.ring_sum)


def test_entries_only_one_member_covers_are_counted_before_the_round():
    from fedledger.secagg.aggregate import sole_coverage

    case = build_case(members={1: (1.0, "static", 4), 2: (0.5, "static", 3), 3: (0.5, "static", 2)}, threshold=2)
    alone = sole_coverage(case.setup)
    assert alone[2] == alone[3] == 0  # the two half-width members cover the same half
    # the full-width member alone covers everything outside that half: the aggregate shows it
    only_one = case.setup.positions[1].size - np.intersect1d(case.setup.positions[1], case.setup.positions[2]).size
    assert alone[1] == only_one > 0
    _, aggregate, _ = run_round(case.setup, case.values, BOUND)
    exposed = np.setdiff1d(case.setup.positions[1], case.setup.positions[2])
    mean = aggregate.mean(case.previous)
    where = np.searchsorted(case.setup.positions[1], exposed)
    assert np.array_equal(mean[exposed], case.values[1][where])
