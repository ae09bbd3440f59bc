"""Lying members are named, the reveal rules hold, and t - 1 colluders learn nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedledger.secagg.aggregate import recompute_aggregate
from fedledger.secagg.errors import CheatingMember, InsufficientShares, SecAggError, SecAggInputError
from fedledger.secagg.masks import pair_mask, self_mask, shared_selection
from fedledger.secagg.member import Member
from fedledger.secagg.messages import survivors_digest
from fedledger.secagg.ring import encode
from fedledger.secagg.shamir import combine
from fedledger.secagg.simulation import run_round
from tests.secagg.secagg_cases import BOUND, build_case


def _flip(share: bytes) -> bytes:
    return share[:-1] + bytes([share[-1] ^ 1])


def _lie(published, liar: int, kind: str = "seed_shares"):
    reveal = published.reveals[liar]
    shares = dict(getattr(reveal, kind))
    victim = sorted(shares)[0]
    shares[victim] = _flip(shares[victim])
    published.reveals[liar] = dataclasses.replace(reveal, **{kind: shares})


@pytest.mark.parametrize("kind", ["seed_shares", "key_shares"])
def test_a_member_revealing_a_wrong_share_is_named_and_the_round_still_completes(kind):
    case = build_case(threshold=3)
    published, honest, _ = run_round(case.setup, case.values, BOUND, drop_after={5: "share"})
    _lie(published, 2, kind)
    aggregate = recompute_aggregate(published)
    assert list(aggregate.cheaters) == [2]
    assert "contradict their dealers' commitments" in aggregate.cheaters[2]
    assert np.array_equal(aggregate.ring_sum, honest.ring_sum)


def test_too_many_liars_leave_too_few_shares_and_say_whose():
    case = build_case(threshold=3)
    published, _, _ = run_round(case.setup, case.values, BOUND)
    for liar in (1, 2, 3):
        _lie(published, liar)
    with pytest.raises(InsufficientShares, match=r"member \d: 2 valid seed shares revealed, 3 needed"):
        recompute_aggregate(published)


def test_revealing_both_shares_of_one_member_is_refused_and_named():
    case = build_case(threshold=3)
    published, _, members = run_round(case.setup, case.values, BOUND, drop_after={5: "share"})
    reveal = published.reveals[3]
    greedy = dict(reveal.key_shares)
    greedy[1] = members[3]._received[1][1]  # member 1 survived: its key share must never be revealed
    published.reveals[3] = dataclasses.replace(reveal, key_shares=greedy)
    aggregate = recompute_aggregate(published)
    assert list(aggregate.cheaters) == [3]


def test_a_member_refuses_to_reveal_for_a_second_survivor_set():
    case = build_case(threshold=3)
    _, _, members = run_round(case.setup, case.values, BOUND)
    member = members[1]
    # the round revealed for {1..5}; an aggregator now claiming 2 dropped would get 2's key shares too
    with pytest.raises(SecAggError, match="second, different survivor set"):
        member.reveal([1, 3, 4, 5])
    assert member.reveal([1, 2, 3, 4, 5]).survivors_digest == survivors_digest(2, [1, 2, 3, 4, 5])


def test_a_reveal_for_another_survivor_set_is_named():
    case = build_case(threshold=3)
    published, _, _ = run_round(case.setup, case.values, BOUND)
    published.reveals[4] = dataclasses.replace(published.reveals[4], survivors_digest=survivors_digest(2, [1, 2, 4]))
    assert list(recompute_aggregate(published).cheaters) == [4]


def _phases_to_shares(case):
    members = {m: Member(m, case.setup) for m in case.setup.members}
    keys = {m: members[m].advertise() for m in members}
    shares = {m: members[m].share_keys(keys) for m in members}
    return members, shares


def test_a_dealer_whose_share_contradicts_its_commitment_is_named_by_the_recipient():
    case = build_case(threshold=3)
    members, shares = _phases_to_shares(case)
    commitments = dict(shares[2].seed_share_commitments)
    commitments[4] = bytes(32)
    shares[2] = dataclasses.replace(shares[2], seed_share_commitments=commitments)
    with pytest.raises(CheatingMember) as caught:
        members[4].receive_shares(shares)
    assert caught.value.member == 2


def test_tampered_sealed_shares_name_their_dealer():
    case = build_case(threshold=3)
    members, shares = _phases_to_shares(case)
    sealed = dict(shares[5].sealed_shares)
    sealed[1] = _flip(sealed[1])
    shares[5] = dataclasses.replace(shares[5], sealed_shares=sealed)
    with pytest.raises(CheatingMember, match="member 5: sealed shares for member 1 do not open"):
        members[1].receive_shares(shares)


def test_a_dealer_whose_shares_do_not_rebuild_its_committed_secret_is_named():
    case = build_case(threshold=3)
    published, _, _ = run_round(case.setup, case.values, BOUND)
    published.shares[3] = dataclasses.replace(published.shares[3], seed_commitment=bytes(32))
    with pytest.raises(CheatingMember) as caught:
        recompute_aggregate(published)
    assert caught.value.member == 3


def test_masked_input_of_the_wrong_size_is_refused_with_the_member_named():
    case = build_case(threshold=3)
    published, _, _ = run_round(case.setup, case.values, BOUND)
    masked = published.masked[2]
    published.masked[2] = dataclasses.replace(masked, values=masked.values[:-1])
    with pytest.raises(CheatingMember, match="member 2: masked input does not match"):
        recompute_aggregate(published)


def test_member_refuses_an_update_outside_the_bound_before_sending_anything():
    case = build_case(threshold=3)
    members, shares = _phases_to_shares(case)
    members[1].receive_shares(shares)
    bad = case.values[1].copy()
    bad[0] = BOUND * 2
    with pytest.raises(SecAggInputError, match="exceeds the bound"):
        members[1].masked_input(bad, BOUND)
    bad[0] = np.nan
    with pytest.raises(SecAggInputError, match="NaN"):
        members[1].masked_input(bad, BOUND)


def test_aggregator_with_t_minus_1_colluders_cannot_unmask_an_honest_update():
    # n = 5, t = 3: the aggregator sees everything published and colludes with members 1 and 2.
    case = build_case(threshold=3)
    published, _, members = run_round(case.setup, case.values, BOUND)
    setup, honest = case.setup, 4
    colluders = (1, 2)
    # the colluders' shares of the honest member's mask key are t - 1 = 2: not enough
    key_shares = {c: members[c]._received[honest][1] for c in colluders}
    with pytest.raises(InsufficientShares):
        combine(key_shares, setup.threshold)
    # strip what they can: the revealed self mask and the colluders' own pair masks with member 4
    positions = setup.positions[honest]
    residual = published.masked[honest].values.copy()
    seed = combine({m: r.seed_shares[honest] for m, r in published.reveals.items()}, setup.threshold)
    residual -= self_mask(seed, setup.round_index, honest, positions.size, setup.ring)
    for c in colluders:
        where = shared_selection(positions, setup.positions[c], setup.global_length)
        mask = pair_mask(members[c]._pair_secrets[honest], setup.round_index, positions[where], setup.ring)
        residual[where] += mask  # c < 4 added +P, so member 4 added -P
    plain = encode(case.values[honest], setup.weights[honest], setup.ring, BOUND)
    # the honest pair masks (with 3 and 5) still hide every entry they cover
    hidden = shared_selection(positions, np.union1d(setup.positions[3], setup.positions[5]), setup.global_length)
    assert hidden.any()
    assert not np.any(residual[hidden] == plain[hidden])
    # entries only the honest member and colluders cover: the aggregate itself gives them away
    # (colluders subtract their own inputs), so masks cannot and need not hide them (docs/secagg.md)
    assert np.array_equal(residual[~hidden], plain[~hidden])


def test_a_bad_dealer_changes_nothing_in_the_recipient_and_honest_shares_still_arrive():
    case = build_case(threshold=3)
    members, shares = _phases_to_shares(case)
    good = dict(shares)
    sealed = dict(shares[3].sealed_shares)
    sealed[2] = _flip(sealed[2])
    shares[3] = dataclasses.replace(shares[3], sealed_shares=sealed)
    with pytest.raises(CheatingMember):
        members[2].receive_shares(shares)
    with pytest.raises(SecAggError, match="before the shares were received"):
        members[2].masked_input(case.values[2], BOUND)
    members[2].receive_shares(good)  # nothing was half-stored: the honest set is accepted
    assert members[2].masked_input(case.values[2], BOUND).values.size == case.setup.positions[2].size


def test_a_degenerate_advertised_key_names_its_member():
    from fedledger.secagg.hybrid import HybridPublic

    case = build_case(threshold=3)
    members = {m: Member(m, case.setup) for m in case.setup.members}
    keys = {m: members[m].advertise() for m in members}
    bad = keys[4]
    keys[4] = dataclasses.replace(bad, channel=HybridPublic(bytes(32), bad.channel.mlkem))  # the zero point
    with pytest.raises(CheatingMember) as caught:
        members[1].share_keys(keys)
    assert caught.value.member == 4
    keys[4] = bad
    assert members[1].share_keys(keys).member == 1  # the refused attempt left no state behind
