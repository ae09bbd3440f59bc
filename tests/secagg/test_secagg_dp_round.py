"""Secure aggregation with DP on the real Anvil: members clip their own updates before masking, the
unmasked aggregate gets central DP's committed-secret noise, every co-signer recomputes it bit for bit,
and the audit accounts the round's epsilon against the on-chain budget."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from demo.in_process import InProcessConsortium
from fedledger.audit.service import AuditService
from fedledger.chain.localchain import LocalChain
from fedledger.dp.central_aggregation import clip_update
from fedledger.fl import ClientUpdate, load_client_update
from fedledger.protocol.noise_seed import NoiseSeedError
from fedledger.protocol.round_check import AggregationRule
from fedledger.protocol.secagg_round import SecAggRecord, SecureRoundError, compute_secure_round
from fedledger.secagg.layout import flatten_state
from fedledger.secagg.messages import RoundSetup
from fedledger.secagg.ring import dequantise
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import open_store
from node.noise_commitment import open_noise_secret
from node.participant import round_dir
from node.secagg_check import recompute_secure_round
from tests.secagg.secagg_cases import exact_alignment
from tests.secagg.test_secagg_round_mode import _manifest, _models
from tests.support.manual_aggregator import round_updates

EPSILON = 8.0


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessConsortium]:
    with LocalChain("anvil") as chain:
        c = InProcessConsortium.create(
            tmp_path_factory.mktemp("secure-dp"), chain, epochs=1, secure_aggregation=True, dp_epsilon=EPSILON
        )
        c.run_rounds(1, timeout=180)
        yield c


def _secure_round(
    c: InProcessConsortium, rule: AggregationRule | None, secret: bytes | None
) -> dict[str, torch.Tensor]:
    """Round 0 recomputed by the shared pipeline from what the ledger and the manifest publish."""
    node = c.nodes[0]
    assert node.rule.secagg is not None
    base, _ = _models(c, 0)
    record = SecAggRecord.from_dict(_manifest(c, 0).secagg)
    updates = round_updates(node.ledger, 0)
    args = (node.store, node.master_public_key, node.consortium, 0, base, updates, node.rule.secagg, record)
    return compute_secure_round(*args, dp=rule, noise_secret=secret)[0].state


def _secret(c: InProcessConsortium, rule: AggregationRule) -> bytes:
    node = c.nodes[0]
    assert rule.noise is not None
    return open_noise_secret(node.vault, node.state_dir, 0, rule.noise)


def test_a_secure_round_with_dp_posts_noised_and_every_cosigner_recomputes_it(consortium: InProcessConsortium) -> None:
    c = consortium
    manifest = _manifest(c, 0)  # posted: the k-of-n co-signers recomputed and signed it
    rule = AggregationRule.from_dict(manifest.rule)
    assert rule.secagg is not None and rule.privacy is not None and rule.noise is not None
    assert rule.privacy.participants == 5 and rule.privacy.clip == 1.0 and len(manifest.included) == 5
    base, posted = _models(c, 0)
    secret = _secret(c, rule)

    noised = _secure_round(c, rule, secret)
    noiseless = _secure_round(c, None, None)
    assert np.array_equal(flatten_state(posted).view(np.uint32), flatten_state(noised).view(np.uint32))
    moved = np.abs(flatten_state(posted) - flatten_state(noiseless))
    assert moved.max() > 1e-3  # noise of std z * w_max * C / W per entry, not rounding

    # the members clipped before masking: the noiseless aggregate is the alignment of clipped updates
    setup = RoundSetup.from_bytes(SecAggRecord.from_dict(manifest.secagg).setup.read(c.nodes[0].store))
    clipped, unclipped = [], []
    for node in c.nodes:
        own = load_client_update(round_dir(node, 0) / "update.safetensors")
        bound = node.dp_clip - math.sqrt(sum(t.numel() for t in own.state.values())) * 2.0**-16
        for out, update in ((clipped, clip_update(own, base, bound)), (unclipped, own)):
            state = {n: torch.from_numpy(dequantise(t.numpy(), setup.ring, 8.0)) for n, t in update.state.items()}
            out.append(ClientUpdate(node.name, state, update.index_map, update.num_samples))
    plain = flatten_state(exact_alignment().aggregate(base, clipped))
    assert np.array_equal(flatten_state(noiseless).view(np.uint32), plain.view(np.uint32))
    assert not np.array_equal(plain, flatten_state(exact_alignment().aggregate(base, unclipped)))

    # the audit recomputes epsilon from the ledger alone and sets it next to the on-chain budget
    ledger = c.nodes[0].ledger
    audit = AuditService(ledger, open_store(c.layout.store_spec), SignMasterPublicKey.load(c.layout.master_public_key))
    account = audit.privacy()
    assert account.budget is not None and account.budget.epsilon == EPSILON
    assert account.within_budget and 0 < account.spent_epsilon <= EPSILON and len(account.rounds) == 1
    assert audit.summary().failures == []


def test_a_cosigner_refuses_a_wrong_noise_secret_or_another_clip(consortium: InProcessConsortium) -> None:
    c = consortium
    rule = AggregationRule.from_dict(_manifest(c, 0).rule)
    with pytest.raises(NoiseSeedError, match="does not open its published commitment"):
        _secure_round(c, rule, b"\x00" * 32)
    with pytest.raises(SecureRoundError, match="needs its noise secret"):
        _secure_round(c, rule, None)
    node = c.nodes[1]
    looser = dataclasses.replace(node, dp_clip=2.0)  # the aggregator told members one clip, wrote another
    base_path = round_dir(node, 0) / "base.safetensors"
    with pytest.raises(SecureRoundError, match="DP clip 1 is not the 2 this node clipped its update to"):
        recompute_secure_round(looser, 0, base_path, round_updates(node.ledger, 0), _manifest(c, 0), _secret(c, rule))
