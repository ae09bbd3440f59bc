"""`kgc setup/extract-encrypt/register-card` and `store add --encrypt-to` / `store get --key-file`,
through the real root app on real files and a real embedded store."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fedledger.cli import app
from fedledger.envelope import RecipientKeys
from fedledger.protocol.consortium import Consortium, Member
from fedledger.protocol.errors import SealedModelError
from fedledger.protocol.key_distribution import read_transport_password, transport_password_path
from fedledger.protocol.readers import READER_CARD_FILE, READER_KEYS_FILE, install_reader_keys, reader_keys_from_kgc
from fedledger.sm9 import SM9KeyError

PASSWORD = "cli-test-password"
ENV = {"FEDLEDGER_KEY_PASSWORD": PASSWORD}


def _transport(issued: Path) -> str:
    return read_transport_password(transport_password_path(issued))


def _run(args: list[str], code: int = 0) -> str:
    result = CliRunner().invoke(app, args, env=ENV)
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A KGC, a roster with two members and an aggregator, and each party's reader keys and card."""
    root = tmp_path_factory.mktemp("sealcli")
    kgc = root / "kgc"
    _run(["kgc", "setup", "--out", str(kgc)])
    assert stat.S_IMODE((kgc / "enc_master.key").stat().st_mode) == 0o600
    assert (kgc / "enc_master_public.pem").read_text().startswith("-----BEGIN SM9 ENC MASTER PUBLIC KEY-----")
    members = (Member("h1", "0x" + "01" * 20, "inst:h1", 1), Member("h2", "0x" + "02" * 20, "inst:h2", 2))
    Consortium(1, "0x" + "ab" * 20, "consortium:1", 2, members).save(root / "consortium.json")
    for identity in ("inst:h1", "inst:h2", "agg"):
        issued = root / f"enc-{identity}.key"
        _run(
            [
                "kgc",
                "extract-encrypt",
                "--id",
                identity,
                "--enc-master",
                str(kgc / "enc_master.key"),
                "--out",
                str(issued),
            ]
        )
        # issued like every other KGC key: under its own transport password, never the master's
        transport = transport_password_path(issued)
        assert stat.S_IMODE(transport.stat().st_mode) == 0o600
        with pytest.raises(SM9KeyError):
            reader_keys_from_kgc(issued, PASSWORD, identity)
        party = root / identity.replace(":", "-")
        party.mkdir()
        keys = reader_keys_from_kgc(issued, read_transport_password(transport), identity)
        install_reader_keys(keys, party, PASSWORD)  # what init does
    card = root / "inst-h1" / READER_CARD_FILE
    _run(["kgc", "register-card", "--roster", str(root / "consortium.json"), "--card", str(card),
          "--enc-master-public", str(kgc / "enc_master_public.pem")])  # fmt: skip
    _run(["kgc", "register-card", "--roster", str(root / "consortium.json"), "--aggregator",
          "--card", str(root / "agg" / READER_CARD_FILE)])  # fmt: skip
    assert Consortium.load(root / "consortium.json").aggregator.sm9_identity == "agg"  # type: ignore[union-attr]
    return root


def test_add_encrypt_to_then_get_with_and_without_the_key(setup: Path, tmp_path: Path) -> None:
    roster, store = str(setup / "consortium.json"), f"local:{tmp_path / 'store'}"
    secret = b"model bytes nobody else may read " * 500
    (tmp_path / "model.bin").write_bytes(secret)
    cid = _run(
        ["store", "add", str(tmp_path / "model.bin"), "--encrypt-to", "h1", "--roster", roster, "--store", store]
    )
    cid = cid.strip()
    raw = tmp_path / "raw.bin"
    _run(["store", "get", cid, "-o", str(raw), "--raw", "--store", store])
    assert secret[:64] not in raw.read_bytes()

    refused = _run(["store", "get", cid, "-o", str(tmp_path / "x"), "--store", store], code=1)
    keys = RecipientKeys.load(setup / "inst-h1" / READER_KEYS_FILE, PASSWORD)
    assert f"is encrypted for inst:h1 (key id {keys.public.key_id.hex()})" in refused and len(refused.splitlines()) == 1
    assert not (tmp_path / "x").exists()

    other = _run(["store", "get", cid, "-o", str(tmp_path / "x"), "--store", store,
                  "--key-file", str(setup / "inst-h2" / READER_KEYS_FILE)], code=1)  # fmt: skip
    assert "not for inst:h2" in other and not (tmp_path / "x").exists()

    out = tmp_path / "out.bin"
    _run(
        ["store", "get", cid, "-o", str(out), "--store", store, "--key-file", str(setup / "inst-h1" / READER_KEYS_FILE)]
    )
    assert out.read_bytes() == secret and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_encrypt_to_refuses_unknown_and_unregistered_readers_in_one_line(setup: Path, tmp_path: Path) -> None:
    (tmp_path / "m").write_bytes(b"x")
    roster, store = str(setup / "consortium.json"), f"local:{tmp_path / 'store'}"
    unknown = _run(
        ["store", "add", str(tmp_path / "m"), "--encrypt-to", "inst:nobody", "--roster", roster, "--store", store],
        code=2,
    )
    assert "neither a member nor the aggregator" in unknown and len(unknown.splitlines()) == 1
    unregistered = _run(
        ["store", "add", str(tmp_path / "m"), "--encrypt-to", "inst:h2", "--roster", roster, "--store", store], code=2
    )
    assert "no ML-KEM card registered" in unregistered
    assert not (tmp_path / "store" / "blocks").exists() or not any((tmp_path / "store" / "blocks").rglob("*.data"))


def test_register_card_refuses_a_card_of_a_stranger(setup: Path, tmp_path: Path) -> None:
    before = (setup / "consortium.json").read_text()
    card = tmp_path / "card.json"
    stranger = reader_keys_from_kgc(setup / "enc-agg.key", _transport(setup / "enc-agg.key"))
    card.write_text(stranger.public.to_json().replace(b"agg".hex(), b"eve".hex()))
    out = _run(["kgc", "register-card", "--roster", str(setup / "consortium.json"), "--card", str(card)], code=2)
    assert "neither a member nor the aggregator" in out
    assert (setup / "consortium.json").read_text() == before


def test_reader_keys_of_another_identity_are_refused_and_a_reinstall_keeps_the_mlkem_key(setup: Path) -> None:
    with pytest.raises(SealedModelError, match="another identity"):
        reader_keys_from_kgc(setup / "enc-inst:h1.key", _transport(setup / "enc-inst:h1.key"), "inst:h2")
    installed = RecipientKeys.load(setup / "inst-h1" / READER_KEYS_FILE, PASSWORD)
    again = reader_keys_from_kgc(setup / "inst-h1" / READER_KEYS_FILE, PASSWORD, "inst:h1")
    assert again.public == installed.public
    issued = setup / "enc-inst:h1.key"
    assert reader_keys_from_kgc(issued, _transport(issued)).public != installed.public  # fresh ML-KEM
