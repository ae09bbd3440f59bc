"""put_model/get_model against the real embedded store: sealed in, opened and digest-checked out,
readers chosen from the chain's active set joined with the roster."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fedledger.digests import sm3_file
from fedledger.envelope import EnvelopeIntegrityError, RecipientKeys
from fedledger.protocol.consortium import Consortium, Member, Reader
from fedledger.protocol.errors import ModelDigestMismatch, SealedModelError
from fedledger.protocol.model_files import ModelVault, get_model, put_model
from fedledger.protocol.readers import model_readers, sealing_key_if_any, sealing_master_key
from fedledger.sm9.encryption_keys import EncryptMasterKey
from fedledger.store.local import LocalStore


def _file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _roster(kgc: EncryptMasterKey, readers: dict[str, RecipientKeys]) -> Consortium:
    members = tuple(
        Member(f"h{i}", "0x" + f"{i + 1:02x}" * 20, ident, i + 1, readers[ident].public.mlkem_public.hex())
        for i, ident in enumerate(["inst:a", "inst:b", "inst:c"])
    )
    agg = Reader("aggregator", "aggregator", readers["aggregator"].public.mlkem_public.hex())
    return Consortium(1, "0x" + "ab" * 20, "consortium:1:0xab", 2, members, kgc.public_key.to_der().hex(), agg)


def test_put_then_get_returns_the_file_to_each_reader_and_nobody_else(
    tmp_path: Path, kgc: EncryptMasterKey, readers: dict[str, RecipientKeys]
) -> None:
    store = LocalStore(tmp_path / "store", durable=False)
    model = _file(tmp_path / "model.bin", os.urandom(300_000))
    cards = [readers["inst:a"].public, readers["aggregator"].public]
    cid, digest = put_model(store, model, cards, kgc.public_key)
    assert digest == sm3_file(model)
    assert model.read_bytes() not in store.read_bytes(cid)
    for name in ("inst:a", "aggregator"):
        out = get_model(store, cid, digest, tmp_path / name / "m.bin", readers[name])
        assert out.read_bytes() == model.read_bytes()
        assert out.stat().st_mode & 0o777 == 0o600
    with pytest.raises(SealedModelError, match="not readable with this party's keys"):
        get_model(store, cid, digest, tmp_path / "b" / "m.bin", readers["inst:b"])
    assert not (tmp_path / "b" / "m.bin").exists()


def test_a_swapped_cid_of_another_valid_ciphertext_is_caught_by_the_plaintext_digest(
    tmp_path: Path, kgc: EncryptMasterKey, readers: dict[str, RecipientKeys]
) -> None:
    store = LocalStore(tmp_path / "store", durable=False)
    cards = [readers["inst:a"].public]
    _cid, digest = put_model(store, _file(tmp_path / "honest", b"honest model" * 1000), cards, kgc.public_key)
    other_cid, _ = put_model(store, _file(tmp_path / "other", b"another model" * 1000), cards, kgc.public_key)
    dest = tmp_path / "out" / "m.bin"
    with pytest.raises(ModelDigestMismatch, match="differs from the ledger's"):
        get_model(store, other_cid, digest, dest, readers["inst:a"])
    assert not dest.exists()


def test_a_flipped_ciphertext_byte_yields_no_file(
    tmp_path: Path, kgc: EncryptMasterKey, readers: dict[str, RecipientKeys]
) -> None:
    store = LocalStore(tmp_path / "store", durable=False)
    model = _file(tmp_path / "m", os.urandom(5000))
    cid, digest = put_model(store, model, [readers["inst:a"].public], kgc.public_key)
    sealed = bytearray(store.read_bytes(cid))
    sealed[-100] ^= 1
    tampered = store.put(bytes(sealed))
    with pytest.raises(EnvelopeIntegrityError):
        get_model(store, tampered, digest, tmp_path / "out", readers["inst:a"])
    assert not (tmp_path / "out").exists()


def test_readers_are_the_active_members_with_cards_and_the_aggregator(
    kgc: EncryptMasterKey, readers: dict[str, RecipientKeys]
) -> None:
    roster = _roster(kgc, readers)
    chosen = model_readers(roster, ["inst:a", "inst:c"])  # inst:b was removed on chain
    assert [r.identity for r in chosen] == [b"inst:a", b"inst:c", b"aggregator"]
    assert chosen[0] == readers["inst:a"].public
    assert [r.identity for r in model_readers(roster, ["inst:a", "inst:new"])] == [b"inst:a", b"aggregator"]
    assert sealing_master_key(roster) == kgc.public_key
    assert Consortium.from_dict(roster.to_dict()) == roster


def test_a_roster_without_encryption_material_is_refused_with_one_clear_line(
    kgc: EncryptMasterKey, readers: dict[str, RecipientKeys]
) -> None:
    bare = Consortium(1, "0x" + "ab" * 20, "c", 1, (Member("h", "0x" + "01" * 20, "inst:a", 1),))
    with pytest.raises(SealedModelError, match="no SM9 encryption master public key"):
        sealing_master_key(bare)
    with pytest.raises(SealedModelError, match="no aggregator reader card"):
        model_readers(bare, ["inst:a"])
    broken = Consortium(1, "0x" + "ab" * 20, "c", 1, bare.members, "zz", Reader("agg", "agg", "00"))
    with pytest.raises(SealedModelError, match="malformed"):
        sealing_master_key(broken)
    with pytest.raises(SealedModelError, match="malformed"):
        model_readers(broken, [])


def test_a_roster_without_an_encryption_master_key_stores_plaintext_checked_by_digest(tmp_path: Path) -> None:
    """A federation provisioned without sealing (no encryption master key in the roster) still runs."""
    store = LocalStore(tmp_path / "store", durable=False)
    roster = Consortium(1, "0x" + "ab" * 20, "consortium:1:0xab", 1, (Member("h0", "0x" + "01" * 20, "inst:a", 1),))
    vault = ModelVault(store, sealing_key_if_any(roster), None)
    assert not vault.sealing
    model = _file(tmp_path / "model.bin", b"plain model" * 100)
    cid, digest = vault.put(model, [])
    assert (cid, digest) == (store.put(model), sm3_file(model))
    assert vault.get(cid, digest, tmp_path / "out" / "m.bin").read_bytes() == model.read_bytes()
    assert vault.reseal_for(cid, digest, [], tmp_path) == cid
    with pytest.raises(ModelDigestMismatch):
        vault.get(cid, b"\x00" * 32, tmp_path / "other" / "m.bin")
    assert not (tmp_path / "other" / "m.bin").exists()


def test_readers_of_names_whom_a_file_is_sealed_to_and_none_when_the_vault_does_not_seal(
    tmp_path: Path, kgc: EncryptMasterKey, readers: dict[str, RecipientKeys]
) -> None:
    store = LocalStore(tmp_path / "store", durable=False)
    model = _file(tmp_path / "model.bin", os.urandom(5_000))
    sealing = ModelVault(store, kgc.public_key, readers["inst:a"])
    cid, _digest = sealing.put(model, [readers["inst:a"].public, readers["aggregator"].public])
    assert sealing.readers_of(cid) == {"inst:a", "aggregator"}  # not inst:b: a member added since
    plain = ModelVault(store, None, None)
    assert plain.readers_of(plain.put(model, [])[0]) is None
