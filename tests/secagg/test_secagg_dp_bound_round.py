"""A secure DP round whose base model has left the rule's value bound (8) still takes every honest member.

The genesis is prepared with one entry at 9.5 in the classifier head, which every member covers: it is
what a noised global model looks like after a few rounds at epsilon 8. With the rule's fixed bound every
member's trained values pass 8, each leaves the round and the round fails (seen before the fix); the
round's bound is derived from the base every party
holds and the clip (max|base| + clip, to the next power of two: 16), declared in every signed join,
recomputed by the aggregator and every co-signer, and a record whose joins state another bound is
refused by the co-signers, and by the audit where the bound is not one the derivation can give.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import aggregator.driver as driver
from aggregator.config import load_config, save_config
from demo.in_process import InProcessConsortium
from fedledger.audit.secure_round import secure_round_check
from fedledger.chain.localchain import LocalChain
from fedledger.fl import ModelSpec, initial_global_state, load_client_update
from fedledger.protocol.manifest import RoundManifest
from fedledger.protocol.round_check import LedgerUpdate
from fedledger.protocol.secagg_round import Join, SecAggRecord, SecureRoundError, publish
from fedledger.protocol.secagg_rule import DEFAULT_VALUE_BOUND
from fedledger.secagg.layout import flatten_state
from node.participant import NodeContext, round_dir
from node.secagg_check import recompute_secure_round
from tests.secagg.test_secagg_round_mode import _manifest, _models, _record
from tests.support.manual_aggregator import round_updates

BASE_PEAK = 9.5  # past the default bound, as the noised global drifts at epsilon 8


def _genesis_past_the_bound(spec: ModelSpec, seed: int) -> dict[str, torch.Tensor]:
    """The seeded initial model with one weight of its first matrix (the CNN's classifier head, which every
    sub-model keeps whole on its class side) at 9.5."""
    state = initial_global_state(spec, seed)
    first = next(name for name, t in state.items() if t.dim() == 2)
    state[first][-1, 0] = BASE_PEAK
    return state


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    with LocalChain("anvil") as chain, pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver, "initial_global_state", _genesis_past_the_bound)
        c = InProcessConsortium.create(
            tmp_path_factory.mktemp("secure-dp-bound"), chain, epochs=1, secure_aggregation=True, dp_epsilon=8.0
        )
        config, base = load_config(c.layout.aggregator_dir)
        save_config(config.model_copy(update={"secagg_phase_seconds": 6.0, "dp_epsilon": 4.0}), base)
        c.run_rounds(1, timeout=240)
        yield c


def _joins(c: InProcessConsortium, record: SecAggRecord) -> dict[int, Join]:
    return {m: Join.from_bytes(ref.read(c.nodes[0].store)) for m, ref in record.joins.items()}


def _with_bound(c: InProcessConsortium, manifest: RoundManifest, bound: float) -> RoundManifest:
    """The manifest with every join re-signed by its own member, stating ``bound`` (as members colluding
    with the aggregator could): same keys, same setup, only the declared bound differs."""
    record = SecAggRecord.from_dict(manifest.secagg)
    refs = {}
    for m, join in _joins(c, record).items():
        data = dataclasses.replace(join, value_bound=bound).signed(c.nodes[m - 1].sm9_key).to_bytes()
        refs[m] = publish(c.nodes[0].store, data)
    return dataclasses.replace(manifest, secagg=dataclasses.replace(record, joins=refs).to_dict())


def _cosigner(c: InProcessConsortium) -> tuple[NodeContext, Path, list[LedgerUpdate]]:
    """A co-signer of round 0, its base model file, and the round's ledger entries."""
    node = c.nodes[1]
    return node, round_dir(node, 0) / "base.safetensors", round_updates(node.ledger, 0)


def test_every_honest_member_is_included_when_the_base_leaves_the_default_bound(
    consortium: InProcessConsortium,
) -> None:
    c = consortium
    base, posted = _models(c, 0)
    assert float(max(t.abs().max() for t in base.values())) == BASE_PEAK > DEFAULT_VALUE_BOUND
    manifest = _manifest(c, 0)  # posted: k co-signers recomputed it bit for bit
    assert len(manifest.included) == 5 and manifest.excluded == ()
    record, setup = _record(c, 0)
    assert record.survivors == (1, 2, 3, 4, 5)
    assert {j.value_bound for j in _joins(c, record).values()} == {16.0}  # 9.5 + clip 1, to a power of two
    assert setup.ring.bits == 64
    # hospital-1 trained past 8 on that entry: with the rule's fixed bound it would have left the round
    first = next(name for name, t in base.items() if t.dim() == 2)
    own = load_client_update(round_dir(c.nodes[0], 0) / "update.safetensors")
    assert float(own.state[first][-1, 0]) > DEFAULT_VALUE_BOUND

    node, base_path, updates = _cosigner(c)
    computation, _ = recompute_secure_round(node, 0, base_path, updates, manifest)
    assert np.array_equal(flatten_state(computation.state).view(np.uint32), flatten_state(posted).view(np.uint32))


def test_a_record_stating_another_bound_is_refused_by_cosigners_and_the_audit(
    consortium: InProcessConsortium,
) -> None:
    c = consortium
    manifest = _manifest(c, 0)
    node, base_path, updates = _cosigner(c)
    for bound in (DEFAULT_VALUE_BOUND, 32.0):  # the rule's stale bound, a looser one: the same 64-bit ring
        with pytest.raises(SecureRoundError, match=f"value bound {bound:g}, the base model and clip 1 give 16"):
            recompute_secure_round(node, 0, base_path, updates, _with_bound(c, manifest, bound))

    included = {row.institution: row.cid for row in manifest.included}
    identities = {i.address.lower(): i.sm9_id for i in node.ledger.institutions()}
    args = (node.store, node.master_public_key, 0, manifest.rule)
    assert manifest.secagg is not None
    honest = secure_round_check(*args, manifest.secagg, included, identities)
    assert honest.ok and "value bound 16" in honest.detail, honest.detail
    odd = _with_bound(c, manifest, 12.0)  # no base and clip give a bound that is not a power of two
    assert odd.secagg is not None
    refused = secure_round_check(*args, odd.secagg, included, identities)
    assert not refused.ok and "value bound 12" in refused.detail, refused.detail
    # joins that disagree on the bound give no setup
    record = SecAggRecord.from_dict(manifest.secagg)
    mixed = dict(record.joins)
    mixed[2] = SecAggRecord.from_dict(odd.secagg).joins[2]
    split = secure_round_check(*args, dataclasses.replace(record, joins=mixed).to_dict(), included, identities)
    assert not split.ok and "different value bounds" in split.detail, split.detail
