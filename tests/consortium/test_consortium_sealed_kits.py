"""Kits from `consortium provision` run sealed: every node and the aggregator hold reader keys under
their own password, the roster publishes the encryption master public key and every reader's card,
and the encryption master secret is in the KGC's kit alone (every other kit file is read, and every
secret file opened, to look for it). A kit whose reader keys are missing or not the roster's is
refused at start in one line; a kit provisioned before sealing runs only with --unsealed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fedledger.consortium import kits as k
from fedledger.consortium.issue import AGGREGATOR_READER_IDENTITY
from fedledger.consortium.preflight import NotReady, check_sealing
from fedledger.consortium.provision import provision
from fedledger.envelope import RecipientKeys
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.readers import reader_card
from fedledger.sm9.encryption_keys import KIND_ENC_MASTER, EncryptMasterKey
from fedledger.sm9.keystore import FORMAT, read_header, read_secret_file
from tests.consortium.test_consortium_e2e import institution
from tests.consortium.test_consortium_start import fedledger, one_line_error

NODES = ("hospital-1", "hospital-2")


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sealed-kits")
    digits = '{ kind = "builtin", path = "digits", partitions = 2, index = %d }'
    plan = (
        'name = "sealed"\nk = 2\n[chain]\nrpc_url = "http://127.0.0.1:9"\nchain_id = 31337\n'
        f'[store]\nspec = "local:{root / "store"}"\n[aggregator]\nurl = "https://127.0.0.1:9"\n'
        '[task]\ninput_shape = [1, 8, 8]\nlabels = ["0","1","2","3","4","5","6","7","8","9"]\n'
        'model = { family = "cnn", hidden = [8] }\n'
        + "".join(institution(name, 0.5, digits % i) for i, name in enumerate(NODES))
    )
    (root / "consortium.toml").write_text(plan, encoding="utf-8")
    provision(root / "consortium.toml", root / "kits")
    return root / "kits"


def _password(kits: Path, party: str) -> str:
    return k.password_file(kits, party).read_text(encoding="utf-8").splitlines()[0]


def _reader_keys(kits: Path, party: str) -> RecipientKeys:
    return RecipientKeys.load(kits / party / k.READER_KEYS, _password(kits, party))


def test_every_reader_holds_its_own_keys_and_the_roster_publishes_every_card(kits: Path) -> None:
    roster = Consortium.load(kits / k.ROSTER_FILE)
    master = EncryptMasterKey.load(kits / "kgc" / k.ENC_MASTER_KEY, _password(kits, "kgc"))
    assert roster.encrypt_master_public == master.public_key.to_der().hex()
    identities = {**{m.name: m.sm9_identity for m in roster.members}, "aggregator": AGGREGATOR_READER_IDENTITY}
    assert set(identities) == {*NODES, "aggregator"}
    for party, identity in identities.items():
        path = kits / party / k.READER_KEYS
        assert path.stat().st_mode & 0o777 == 0o600, party
        keys = _reader_keys(kits, party)
        assert keys.identity == identity.encode()
        assert reader_card(roster, identity) == keys.public  # the roster seals to exactly these keys
        assert json.loads((kits / party / k.READER_CARD).read_text())["key_id"] == keys.public.key_id.hex()
        assert Consortium.load(kits / party / k.KEYS / k.ROSTER_NAME) == roster  # every kit has the roster
        other = next(p for p in identities if p != party)
        with pytest.raises(Exception, match="wrong password"):  # under the party's own password only
            RecipientKeys.load(path, _password(kits, other))
    key_ids = {_reader_keys(kits, party).public.key_id for party in identities}
    assert len(key_ids) == len(identities)  # a fresh ML-KEM pair each
    for party in ("kgc", "deployer"):
        assert not (kits / party / k.READER_KEYS).exists(), party


def test_the_encryption_master_secret_is_in_the_kgc_kit_alone(kits: Path) -> None:
    master = EncryptMasterKey.load(kits / "kgc" / k.ENC_MASTER_KEY, _password(kits, "kgc"))
    ke = master.secret_scalar()
    probes = [f"{ke:064x}".encode(), f"{ke:x}".encode(), str(ke).encode(), ke.to_bytes(32, "big")]
    probes += [p.upper() for p in probes[:2]]
    # control: the probe finds the secret where it is (the KGC's file, opened with the KGC's password)
    _public, secret = read_secret_file(kits / "kgc" / k.ENC_MASTER_KEY, KIND_ENC_MASTER, _password(kits, "kgc"))
    assert any(p in json.dumps(secret).encode() for p in probes)

    files = [p for p in kits.rglob("*") if p.is_file() and kits / "kgc" not in p.parents]
    secret_files = 0
    assert len(files) > 40
    for path in files:
        raw = path.read_bytes()
        assert not any(p in raw for p in probes), path
        if raw.startswith(b"{") and FORMAT.encode() in raw:  # an encrypted key file: open it with its party's password
            assert read_header(path)["kind"] != KIND_ENC_MASTER, path
            party = path.relative_to(kits).parts[0]
            _public, payload = read_secret_file(path, read_header(path)["kind"], _password(kits, party))
            assert not any(p in json.dumps(payload).encode() for p in probes), path
            secret_files += 1
    assert secret_files == 3 * len(NODES) + 1  # per node: SM9 key, share, reader keys; the aggregator: reader keys


def test_a_kit_without_its_reader_keys_is_refused_at_start_in_one_line(kits: Path) -> None:
    copy = kits.parent / "copies" / "hospital-1"
    shutil.copytree(kits / "hospital-1", copy)
    (copy / k.READER_KEYS).unlink()
    done = fedledger(
        ["node", "start", str(copy), "--password-file", str(k.password_file(kits, "hospital-1"))], kits.parent
    )
    message = one_line_error(done)
    assert "reader-keys.json is missing: the consortium seals every model file" in message, message


def test_reader_keys_the_roster_does_not_name_are_refused(kits: Path) -> None:
    roster = Consortium.load(kits / k.ROSTER_FILE)
    mine, theirs = _reader_keys(kits, "hospital-1"), _reader_keys(kits, "hospital-2")
    check_sealing(roster, mine, "inst:hospital-1", Path("reader-keys.json"), unsealed=False)  # control
    with pytest.raises(NotReady, match="is not the key the roster names for inst:hospital-1"):
        check_sealing(roster, theirs, "inst:hospital-1", Path("reader-keys.json"), unsealed=False)
    with pytest.raises(NotReady, match="'inst:nobody' is neither a member nor the aggregator"):
        check_sealing(roster, mine, "inst:nobody", Path("reader-keys.json"), unsealed=False)
    aggregator = _reader_keys(kits, "aggregator")
    check_sealing(roster, aggregator, AGGREGATOR_READER_IDENTITY, Path("reader-keys.json"), unsealed=False)


def test_a_kit_provisioned_before_sealing_runs_only_when_told_unsealed(kits: Path) -> None:
    from dataclasses import replace

    old = replace(Consortium.load(kits / k.ROSTER_FILE), encrypt_master_public="", aggregator=None)
    with pytest.raises(NotReady, match="in plaintext: provision the kits again, or start with --unsealed"):
        check_sealing(old, None, "inst:hospital-1", Path("reader-keys.json"), unsealed=False)
    check_sealing(old, None, "inst:hospital-1", Path("reader-keys.json"), unsealed=True)
