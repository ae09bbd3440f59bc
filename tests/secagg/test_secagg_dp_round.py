"""Secure aggregation with distributed DP noise on the real Anvil: each member clips its update and adds
its Skellam noise share before masking, so the unmasked sum already carries the noise (no central noise,
no noise secret); every co-signer recomputes the posted model from the published masked inputs, refuses
DP parameters the public joins and setup do not imply, and the audit accounts each round's epsilon
against the on-chain budget, also for a round with a dropout.

Round 0: all five members. Round 1: member 5 shares its keys and never sends its masked input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import pytest

from aggregator.config import load_config, save_config
from aggregator.secagg_board import SecureBoard, SecureRound
from demo.in_process import InProcessConsortium
from fedledger.audit.secure_round import secure_round_check
from fedledger.audit.service import AuditService
from fedledger.chain.localchain import LocalChain
from fedledger.dp.accountant import RoundPrivacy, epsilon
from fedledger.dp.central_aggregation import clip_update
from fedledger.dp.distributed import (
    coverage_counts,
    planned_sensitivity,
    realised_noise_multiplier,
    sized_coverage,
)
from fedledger.fl import load_client_update
from fedledger.protocol.manifest import RoundManifest
from fedledger.protocol.round_check import AggregationRule
from fedledger.protocol.secagg_noise import NoisePlan, secure_round_privacy
from fedledger.protocol.secagg_round import (
    Join,
    SecAggRecord,
    SecureRoundError,
    build_setup,
    compute_secure_round,
    publish,
)
from fedledger.secagg.aggregate import Aggregate
from fedledger.secagg.layout import flatten_state
from fedledger.secagg.member import RoundKeys
from fedledger.secagg.messages import RoundSetup
from fedledger.secagg.ring import quantise
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store
from node.participant import round_dir
from node.secagg_check import recompute_secure_round
from node.secagg_client import budgeted_noise_share
from tests.secagg.test_secagg_round_mode import Silent, _manifest, _models, _record, _run_with_manual_member
from tests.support.manual_aggregator import round_updates

BUDGET = 8.0
RUN_EPSILON = 4.0  # each run_rounds call plans its rounds to spend this much: two runs stay within the budget


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    with LocalChain("anvil") as chain:
        c = InProcessConsortium.create(
            tmp_path_factory.mktemp("secure-dp"), chain, epochs=1, secure_aggregation=True, dp_epsilon=BUDGET
        )
        config, base = load_config(c.layout.aggregator_dir)
        save_config(config.model_copy(update={"secagg_phase_seconds": 6.0, "dp_epsilon": RUN_EPSILON}), base)
        c.run_rounds(1, timeout=180)
        yield c


@pytest.fixture(scope="module")
def with_dropout(consortium: InProcessConsortium) -> InProcessConsortium:
    """Round 1, member 5 silent after sharing its keys (n = 5, t = 3)."""
    _run_with_manual_member(consortium, 2, Silent, lambda _, s, p: p == "reveal")  # type: ignore[arg-type]
    return consortium


def _secure_round(c: InProcessConsortium, round_index: int, manifest: RoundManifest) -> tuple[dict, Aggregate]:
    """The round recomputed by the shared pipeline from what the ledger and the manifest publish."""
    node = c.nodes[0]
    assert node.rule.secagg is not None
    base, _ = _models(c, round_index)
    record = SecAggRecord.from_dict(manifest.secagg)
    updates = round_updates(node.ledger, round_index)
    rule = AggregationRule.from_dict(manifest.rule)
    args = (node.store, node.master_public_key, node.consortium, round_index, base, updates, node.rule.secagg, record)
    history = _models(c, round_index - 1)[0] if round_index else None  # G(t-2) for the server momentum step
    computation, aggregate = compute_secure_round(*args, dp=rule, before_previous=history)
    return computation.state, aggregate


def _noiseless_sum(
    c: InProcessConsortium, round_index: int, setup: RoundSetup, survivors: tuple[int, ...]
) -> np.ndarray:
    """What the survivors' inputs sum to without noise: each member's own update, clipped as it clipped
    it, encoded in the ring with its weight (only the test, holding every member's files, can do this)."""
    base, _ = _models(c, round_index)
    total = np.zeros(setup.global_length, dtype=np.int64)
    for m in survivors:
        node = c.nodes[m - 1]
        own = load_client_update(round_dir(node, round_index) / "update.safetensors")
        bound = node.dp_clip - math.sqrt(sum(t.numel() for t in own.state.values())) * 2.0**-setup.ring.frac_bits
        values = flatten_state(clip_update(own, base, bound).state)
        total[setup.positions[m]] += setup.weights[m] * quantise(values, setup.ring, 8.0)
    return total


def _plan(c: InProcessConsortium, round_index: int) -> NoisePlan:
    record, _ = _record(c, round_index)
    plans = {Join.from_bytes(ref.read(c.nodes[0].store)).dp for ref in record.joins.values()}
    assert len(plans) == 1  # every member declared the same plan in its signed join
    plan = plans.pop()
    assert plan is not None
    return plan


def _noise_check(c: InProcessConsortium, round_index: int) -> tuple[float, int]:
    """The unmasked sum minus the noiseless one, against the variance the shares were sized to give:
    (sum of noise**2 / expected variance) / entries, which is 1 within a few sqrt(2 / entries)."""
    manifest = _manifest(c, round_index)
    record, setup = _record(c, round_index)
    plan = _plan(c, round_index)
    _, aggregate = _secure_round(c, round_index, manifest)
    noise = aggregate.ring_sum.view(setup.ring.signed).astype(np.int64) - _noiseless_sum(
        c, round_index, setup, record.survivors
    )
    sized = sized_coverage(setup.positions, setup.global_length, setup.threshold)
    surviving = coverage_counts([setup.positions[m] for m in record.survivors], setup.global_length)
    sensitivity = planned_sensitivity(plan.clip, setup.ring.frac_bits, setup.weights, setup.positions)
    target = (plan.noise_multiplier * sensitivity) ** 2
    released = surviving > 0
    expected = target * surviving[released] / sized[released]
    assert expected.min() >= target  # every released entry carries at least the planned noise
    assert np.all(noise[~released] == 0)
    ratio = float(np.sum(noise[released].astype(np.float64) ** 2 / expected)) / int(released.sum())
    return ratio, int(released.sum())


def test_a_secure_round_with_distributed_noise_posts_and_every_cosigner_recomputes_it(
    consortium: InProcessConsortium,
) -> None:
    c = consortium
    manifest = _manifest(c, 0)  # posted: the k-of-n co-signers recomputed and signed it
    rule = AggregationRule.from_dict(manifest.rule)
    assert rule.secagg is not None and rule.privacy is not None and rule.noise is None  # no noise secret
    assert "noise" not in manifest.rule and rule.privacy.mechanism == "skellam"
    record, setup = _record(c, 0)
    plan = _plan(c, 0)
    assert rule.privacy == secure_round_privacy(setup, plan, record.survivors)
    assert (rule.privacy.participants, plan.clip) == (5, 1.0) and len(manifest.included) == 5
    assert setup.ring.bits == 64  # the ring keeps room for the summed noise (20 sigma)

    state, _ = _secure_round(c, 0, manifest)
    _, posted = _models(c, 0)
    assert np.array_equal(flatten_state(posted).view(np.uint32), flatten_state(state).view(np.uint32))

    ledger = c.nodes[0].ledger
    audit = AuditService(ledger, open_store(c.layout.store_spec), SignMasterPublicKey.load(c.layout.master_public_key))
    account = audit.privacy()
    assert account.budget is not None and account.budget.epsilon == BUDGET and account.within_budget
    assert account.rounds[0].dp == rule.privacy.to_dict()
    assert account.spent_epsilon == pytest.approx(epsilon([rule.privacy], 1e-5))
    assert account.spent_epsilon <= RUN_EPSILON
    assert audit.summary().failures == []


def test_the_unmasked_sum_carries_noise_of_the_planned_scale(consortium: InProcessConsortium) -> None:
    ratio, entries = _noise_check(consortium, 0)
    # a member skipping its share, or shares of the wrong size, moves the ratio by far more than this
    assert abs(ratio - 1) < 6 * math.sqrt(2 / entries), (ratio, entries)


def test_a_round_with_a_dropout_records_the_planned_multiplier_it_still_carries(
    with_dropout: InProcessConsortium,
) -> None:
    c = with_dropout
    manifest = _manifest(c, 1)
    record, setup = _record(c, 1)
    plan = _plan(c, 1)
    # member 5 dropped; another may too when the noised model leaves its value bound (t = 3 must stay)
    assert sorted(setup.weights) == [1, 2, 3, 4, 5] and 5 not in record.survivors and len(record.survivors) >= 3
    privacy = AggregationRule.from_dict(manifest.rule).privacy
    assert privacy is not None and privacy.participants == len(record.survivors)
    assert privacy.noise_multiplier == plan.noise_multiplier
    sized = sized_coverage(setup.positions, setup.global_length, setup.threshold)
    surviving = coverage_counts([setup.positions[m] for m in record.survivors], setup.global_length)
    assert realised_noise_multiplier(plan.noise_multiplier, sized, surviving) >= plan.noise_multiplier
    ratio, entries = _noise_check(c, 1)
    assert abs(ratio - 1) < 6 * math.sqrt(2 / entries), (ratio, entries)

    ledger = c.nodes[0].ledger
    audit = AuditService(ledger, open_store(c.layout.store_spec), SignMasterPublicKey.load(c.layout.master_public_key))
    account = audit.privacy()
    first = RoundPrivacy(**account.rounds[0].dp)  # type: ignore[arg-type]
    assert [r.round for r in account.rounds] == [0, 1] and account.rounds[1].dp == privacy.to_dict()
    assert account.rounds[1].epsilon == pytest.approx(epsilon([privacy], 1e-5))
    assert account.spent_epsilon == pytest.approx(epsilon([first, privacy], 1e-5)) and account.within_budget


def _forged(manifest: RoundManifest, **dp: object) -> RoundManifest:
    rule = dict(manifest.rule)
    rule["dp"] = {**rule["dp"], **dp}
    return dataclasses.replace(manifest, rule=rule)


def test_cosigners_refuse_dp_parameters_the_public_joins_and_setup_do_not_imply(
    consortium: InProcessConsortium,
) -> None:
    c = consortium
    node = c.nodes[1]
    manifest = _manifest(c, 0)
    z = manifest.rule["dp"]["noise_multiplier"]
    base_path = round_dir(node, 0) / "base.safetensors"
    updates = round_updates(node.ledger, 0)
    recompute_secure_round(node, 0, base_path, updates, manifest)  # the posted record passes
    for forged in (
        _forged(manifest, noise_multiplier=2 * z),  # claims more noise, so less epsilon, than the members added
        _forged(manifest, ring_sensitivity=manifest.rule["dp"]["ring_sensitivity"] / 2),
        _forged(manifest, dimension=1),
    ):
        with pytest.raises(SecureRoundError, match="are not what the joins and setup imply"):
            recompute_secure_round(node, 0, base_path, updates, forged)
    # the audit makes the same check from the ledger and the store alone
    included = {row.institution: row.cid for row in manifest.included}
    identities = {i.address.lower(): i.sm9_id for i in node.ledger.institutions()}
    assert manifest.secagg is not None
    audit_args = (node.store, node.master_public_key, 0)
    honest = secure_round_check(*audit_args, manifest.rule, manifest.secagg, included, identities)
    assert honest.ok and "the rule's DP parameters are what the joins' noise plan" in honest.detail
    lied = secure_round_check(*audit_args, forged.rule, manifest.secagg, included, identities)
    assert not lied.ok and "are not what the joins and setup imply" in lied.detail
    no_dp = dataclasses.replace(manifest, rule={k: v for k, v in manifest.rule.items() if k != "dp"})
    with pytest.raises(SecureRoundError, match="the rule names no DP parameters"):
        recompute_secure_round(node, 0, base_path, updates, no_dp)
    looser = dataclasses.replace(node, dp_clip=2.0)  # the aggregator told members one clip, wrote another
    with pytest.raises(SecureRoundError, match="DP clip 1 is not the 2 this node clipped its update to"):
        recompute_secure_round(looser, 0, base_path, updates, manifest)


def test_members_must_all_declare_the_round_s_noise_plan(consortium: InProcessConsortium) -> None:
    c = consortium
    node = c.nodes[0]
    plan = _plan(c, 0)
    smaller = NoisePlan(plan.clip, plan.noise_multiplier / 2)
    record, _ = _record(c, 0)
    joins = {m: Join.from_bytes(ref.read(node.store)) for m, ref in record.joins.items()}
    forged = dataclasses.replace(joins[1], dp=smaller).signed(node.sm9_key)
    shapes = dict(joins[1].parsed_index_map().global_shapes)
    assert node.rule.secagg is not None
    with pytest.raises(SecureRoundError, match="different noise plans"):  # no member deals shares over such a setup
        build_setup(0, node.rule.secagg, {**joins, 1: forged}, shapes)
    # the aggregator's board takes only joins with the plan it announces
    board = SecureBoard(node.store, node.master_public_key, node.consortium, lambda a: True, None, plan)
    sr = SecureRound(7, None, plan)
    join = Join(7, 1, node.account.address.lower(), RoundKeys().advert(7, 1), joins[1].index_map, 10, dp=smaller)
    data = join.signed(node.sm9_key).to_bytes()
    with pytest.raises(SecureRoundError, match="is not the round's"):
        board._keep(sr, "join", 1, publish(node.store, data), data)
    assert sr.view()["dp"] == plan.to_dict() and sr.joins == {}


def test_a_member_adds_no_noise_to_a_round_the_budget_forbids(with_dropout: InProcessConsortium) -> None:
    c = with_dropout  # rounds 0 and 1 are posted
    node = c.nodes[0]
    _, setup = _record(c, 1)
    plan = _plan(c, 1)
    next_round = dataclasses.replace(setup, round_index=2)
    share = budgeted_noise_share(node, next_round, 1, NoisePlan(plan.clip, 10.0))  # spends little
    assert share.shape == setup.positions[1].shape and share.std() > 0
    with pytest.raises(SecureRoundError, match="breaks the consortium's privacy budget: round would bring epsilon"):
        budgeted_noise_share(node, next_round, 1, NoisePlan(plan.clip, plan.noise_multiplier / 10))
