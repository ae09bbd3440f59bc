"""Central DP inside the shared round pipeline (``round_check``) on real sealed files, a real store
and real SM9 keys: the aggregator and every co-signer get the same noised model bit for bit from
the committed secret; a secret that does not open the commitment, or another set of included
entries, gives no model or another noise."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import torch

from fedledger.dp.accountant import RoundPrivacy
from fedledger.fl import ValidationPolicy
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.noise_seed import NoiseSeedError, PublishedNoise, noise_commitment
from fedledger.protocol.round_check import AggregationRule, compute_round
from fedledger.sm9 import SignMasterPublicKey
from tests.protocol.test_protocol_round_check import CONTRACT, MASTER, SPEC, update, world

__all__ = ["world"]  # the fixture, imported for pytest
MPK: SignMasterPublicKey = MASTER.public_key
World = tuple[ModelVault, dict[str, torch.Tensor], bytes]


def dp_rule(secret: bytes, z: float = 1.0) -> AggregationRule:
    commitment = noise_commitment(secret, 31337, CONTRACT, 0)
    noise = PublishedNoise(commitment, "bafkrei-sealed-secret", b"\x00" * 32)
    return AggregationRule(policy=ValidationPolicy(1e6), privacy=RoundPrivacy(0.5, z, 1.0, 5), noise=noise)


def test_co_signers_recompute_the_noised_model_bit_for_bit(world: World, tmp_path: Path) -> None:
    vault, state, base_digest = world
    entries = [update(vault, state, base_digest, tmp_path, i, 0.01 * i) for i in (1, 2, 3)]
    secret = secrets.token_bytes(32)
    rule = dp_rule(secret)
    mine = compute_round(vault, MPK, SPEC, state, base_digest, entries, rule, tmp_path / "a", noise_secret=secret)
    theirs = compute_round(
        vault, MPK, SPEC, state, base_digest, entries[::-1], rule, tmp_path / "b", noise_secret=secret
    )
    assert all(torch.equal(mine.state[n], theirs.state[n]) for n in mine.state)
    plain = compute_round(vault, MPK, SPEC, state, base_digest, entries, AggregationRule(), tmp_path / "c")
    moved = [n for n in plain.state if not torch.equal(plain.state[n], state[n])]
    assert moved and all(not torch.equal(mine.state[n], plain.state[n]) for n in moved)
    manifest = mine.manifest((31337, CONTRACT), 0, base_digest, "bafkrei-global", b"\x01" * 32, rule)
    assert manifest.rule["dp"]["participants"] == 3  # what the round really included
    assert AggregationRule.from_dict(manifest.rule).noise == rule.noise


def test_a_secret_that_does_not_open_the_commitment_gives_no_model(world: World, tmp_path: Path) -> None:
    vault, state, base_digest = world
    entries = [update(vault, state, base_digest, tmp_path, 1, 0.01)]
    rule = dp_rule(secrets.token_bytes(32))
    with pytest.raises(NoiseSeedError, match="does not open its published commitment"):
        compute_round(
            vault, MPK, SPEC, state, base_digest, entries, rule, tmp_path / "a", noise_secret=secrets.token_bytes(32)
        )


def test_the_noise_is_bound_to_the_included_entries(world: World, tmp_path: Path) -> None:
    # the same secret over another set of updates gives independent noise: an aggregator cannot
    # reuse one draw it likes, nor learn a round's noise from another round's
    vault, state, base_digest = world
    a, b = (update(vault, state, base_digest, tmp_path, i, 0.0) for i in (1, 2))  # zero change: model = noise
    secret = secrets.token_bytes(32)
    rule = dp_rule(secret, z=0.5)
    both = compute_round(vault, MPK, SPEC, state, base_digest, [a, b], rule, tmp_path / "1", noise_secret=secret).state
    one = compute_round(vault, MPK, SPEC, state, base_digest, [a], rule, tmp_path / "2", noise_secret=secret).state
    name = next(n for n in both if not torch.equal(both[n], state[n]))
    noise_both, noise_one = both[name] - state[name], one[name] - state[name]
    covered = noise_both != 0
    assert covered.any() and not torch.equal(noise_both[covered] * 2, noise_one[covered])
    assert abs(float(torch.corrcoef(torch.stack([noise_both[covered], noise_one[covered]]))[0, 1])) < 0.3
