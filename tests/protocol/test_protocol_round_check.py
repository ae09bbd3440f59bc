"""The shared round pipeline on real files, a real store and real SM9 keys (no chain needed):
each check names its code, weights come from the ledger entry, the updates are sealed (opened
through the party's vault, plaintext digest checked), and the rule is parsed strictly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from fedledger.envelope.recipients import RecipientKeys
from fedledger.fl import (
    UpdateMetadata,
    ValidationPolicy,
    default_spec,
    extract_submodel,
    initial_global_state,
    save_global,
    save_update,
)
from fedledger.protocol import UpdateEntry
from fedledger.protocol.manifest import ManifestError, ReasonCode
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.round_check import AggregationRule, LedgerUpdate, compute_round
from fedledger.sm9 import SignMasterKey, extract_sign_key, sign
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key
from fedledger.store import LocalStore
from fedledger.widths import width_to_ppm

CONTRACT = "0x" + "11" * 20
SPEC = default_spec((8,), 3)
MASTER = SignMasterKey.generate()
ENC_MASTER = EncryptMasterKey.generate()
READER = RecipientKeys.generate(extract_encrypt_key(ENC_MASTER, "aggregator"))
OUTSIDER = RecipientKeys.generate(extract_encrypt_key(ENC_MASTER, "outsider"))


@pytest.fixture
def world(tmp_path: Path) -> tuple[ModelVault, dict[str, torch.Tensor], bytes]:
    store = LocalStore(tmp_path / "store", durable=False)
    vault = ModelVault(store, ENC_MASTER.public_key, READER)
    state = initial_global_state(SPEC, 0)
    base_digest = save_global(tmp_path / "base.safetensors", state, SPEC, 0)
    return vault, state, base_digest


def update(
    vault: ModelVault,
    state: dict[str, torch.Tensor],
    base_digest: bytes,
    tmp: Path,
    i: int,
    shift: float,
    reader: RecipientKeys = READER,
) -> LedgerUpdate:
    """Institution ``i``'s half-width update (the base cut out, plus ``shift``), honestly signed."""
    sub, index_map = extract_submodel(state, SPEC, 0.5, "static", 0)
    address = "0x" + f"{i:02x}" * 20
    meta = UpdateMetadata(address, 0, 10, base_digest, index_map)
    path = tmp / f"u{i}.safetensors"
    digest = save_update(path, {k: v + shift for k, v in sub.items()}, meta)
    cid, sealed_digest = vault.put(path, [reader.public])
    assert sealed_digest == digest
    entry = UpdateEntry(31337, CONTRACT, 0, address, cid, digest, 10, width_to_ppm(0.5), index_map.digest())
    identity = f"clinic-{i}"
    return LedgerUpdate(entry, sign(extract_sign_key(MASTER, identity), entry.message()).to_der(), identity)


def test_each_entry_is_judged_by_the_first_check_it_fails(world, tmp_path: Path) -> None:
    vault, state, base_digest = world
    good = update(vault, state, base_digest, tmp_path, 1, 0.5)
    no_identity = dataclasses.replace(update(vault, state, base_digest, tmp_path, 2, 0.5), sm9_identity=None)
    bad_der = dataclasses.replace(update(vault, state, base_digest, tmp_path, 3, 0.5), signature_der=b"\x30\x00")
    out = compute_round(
        vault, MASTER.public_key, SPEC, state, base_digest, [bad_der, good, no_identity], AggregationRule(), tmp_path
    )
    assert [u.address for u in out.included] == [good.address]
    assert [(e.institution, e.code) for e in out.excluded] == [
        (no_identity.address, ReasonCode.NOT_MEMBER),
        (bad_der.address, ReasonCode.SIGNATURE_INVALID),
    ]


def test_sealed_updates_open_through_the_vault_and_are_held_to_the_plaintext_digest(world, tmp_path: Path) -> None:
    vault, state, base_digest = world
    good = update(vault, state, base_digest, tmp_path, 1, 0.5)
    unreadable = update(vault, state, base_digest, tmp_path, 2, 0.5, reader=OUTSIDER)
    other = update(vault, state, base_digest, tmp_path, 3, 0.7)
    # entry 3 names its ciphertext CID but the plaintext digest of another file: a swap is caught
    swapped_entry = dataclasses.replace(other.entry, digest=good.entry.digest)
    swapped = dataclasses.replace(
        other, signature_der=sign(extract_sign_key(MASTER, "clinic-3"), swapped_entry.message()).to_der()
    )
    swapped = dataclasses.replace(swapped, entry=swapped_entry)
    out = compute_round(
        vault, MASTER.public_key, SPEC, state, base_digest, [good, unreadable, swapped], AggregationRule(), tmp_path
    )
    assert [u.address for u in out.included] == [good.address]
    assert [(e.institution, e.code) for e in out.excluded] == [
        (unreadable.address, ReasonCode.CONTENT_UNAVAILABLE),
        (swapped.address, ReasonCode.DIGEST_MISMATCH),
    ]


def test_weights_are_the_ledger_entries_and_the_result_is_order_free(world, tmp_path: Path) -> None:
    vault, state, base_digest = world
    a = update(vault, state, base_digest, tmp_path, 1, 1.0)
    b = update(vault, state, base_digest, tmp_path, 2, 3.0)
    rule = AggregationRule(policy=ValidationPolicy(max_norm=1e6))
    one = compute_round(vault, MASTER.public_key, SPEC, state, base_digest, [a, b], rule, tmp_path / "1")
    two = compute_round(vault, MASTER.public_key, SPEC, state, base_digest, [b, a], rule, tmp_path / "2")
    assert all(torch.equal(one.state[n], two.state[n]) for n in one.state)
    covered = next(n for n in one.state if not torch.equal(one.state[n], state[n]))
    changed = one.state[covered] != state[covered]
    # equal ledger weights (10 and 10): the mean of +1 and +3 is +2 wherever both cover
    assert torch.allclose((one.state[covered] - state[covered])[changed], torch.tensor(2.0))


@pytest.mark.parametrize(
    "raw",
    [
        {"name": "mean", "max_norm": None, "norm_policy": "reject"},
        {"name": "alignment", "max_norm": None},
        {"name": "alignment", "max_norm": "big", "norm_policy": "reject"},
        {"name": "alignment", "max_norm": -1, "norm_policy": "reject"},
        {"name": "alignment", "max_norm": None, "norm_policy": "shrug"},
    ],
)
def test_a_rule_this_code_cannot_recompute_is_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ManifestError):
        AggregationRule.from_dict(raw)


def test_the_manifest_rule_picks_the_aggregation_a_poisoner_cannot_drag(world, tmp_path: Path) -> None:
    # the same three entries (+1, +3 and a poisoner's +100, equal ledger weights) under two rules
    store, state, base_digest = world
    entries = [update(store, state, base_digest, tmp_path, i, shift) for i, shift in ((1, 1.0), (2, 3.0), (3, 100.0))]
    policy = ValidationPolicy(max_norm=1e6)
    moved = {}
    for name in ("alignment", "median"):
        rule = AggregationRule(name, policy)
        assert AggregationRule.from_dict(rule.to_dict()) == rule
        out = compute_round(store, MASTER.public_key, SPEC, state, base_digest, entries, rule, tmp_path / name)
        covered = next(n for n in out.state if not torch.equal(out.state[n], state[n]))
        changed = out.state[covered] != state[covered]
        moved[name] = (out.state[covered] - state[covered])[changed]
    assert torch.allclose(moved["alignment"], torch.tensor(104.0 / 3))
    assert torch.allclose(moved["median"], torch.tensor(3.0))


def test_a_rule_round_trips() -> None:
    rule = AggregationRule(policy=ValidationPolicy(12.5, "clip"))
    assert AggregationRule.from_dict(rule.to_dict()) == rule


def test_an_update_must_name_every_reader_the_round_opened_with(world, tmp_path: Path) -> None:
    """Readers come from the base's public header intersected with the chain's readers now: a member
    added mid-round is not required (honest updates sealed before it joined still count), a file that
    leaves out one of the round's readers is excluded by name without being opened."""
    vault, state, base_digest = world
    base_cid, _ = vault.put(tmp_path / "base.safetensors", [READER.public, OUTSIDER.public])
    late = RecipientKeys.generate(extract_encrypt_key(ENC_MASTER, "late-joiner"))
    readers = vault.round_readers(base_cid, [READER.public, OUTSIDER.public, late.public])
    assert [r.identity for r in readers] == [b"aggregator", b"outsider"]
    everyone = update(vault, state, base_digest, tmp_path, 1, 0.5)
    everyone = dataclasses.replace(everyone, entry=dataclasses.replace(everyone.entry, cid=vault.put(
        tmp_path / "u1.safetensors", [READER.public, OUTSIDER.public])[0]))  # fmt: skip
    everyone = dataclasses.replace(
        everyone, signature_der=sign(extract_sign_key(MASTER, "clinic-1"), everyone.entry.message()).to_der()
    )
    aggregator_only = update(vault, state, base_digest, tmp_path, 2, 0.5)
    out = compute_round(
        vault, MASTER.public_key, SPEC, state, base_digest, [everyone, aggregator_only], AggregationRule(),
        tmp_path / "w", readers,
    )  # fmt: skip
    assert [u.address for u in out.included] == [everyone.address]
    unavailable = ReasonCode.CONTENT_UNAVAILABLE
    assert [(e.institution, e.code) for e in out.excluded] == [(aggregator_only.address, unavailable)]
    assert "missing: outsider" in out.excluded[0].reason
    plain = ModelVault(vault.store, None, None)
    assert plain.round_readers(base_cid, [READER.public]) == []  # a federation that does not seal checks nothing
