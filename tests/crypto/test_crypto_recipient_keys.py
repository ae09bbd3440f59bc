"""Keys at rest: a member's SM9 decryption key and ML-KEM seed in one password-encrypted file
(mode 0600, secrets absent from the file's text, the repr and error messages), and the public card
the roster publishes.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fedledger.envelope import EnvelopeKeyError, Recipient, RecipientKeys
from fedledger.sm9.encoding import g2_to_bytes
from fedledger.sm9.encryption_keys import EncryptMasterKey, EncryptPrivateKey, extract_encrypt_key
from fedledger.sm9.errors import SM9EncodingError, SM9KeyError


def test_key_file_round_trip_is_0600_and_hides_secrets(tmp_path: Path, members: list[RecipientKeys]) -> None:
    keys = members[0]
    path = tmp_path / "member.keys"
    keys.save(path, "correct horse")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    seed_hex = keys._mlkem.private_bytes_raw().hex()
    assert seed_hex not in text and g2_to_bytes(keys.sm9_key.point).hex() not in text
    assert seed_hex not in repr(keys) and "hidden" in repr(keys)
    loaded = RecipientKeys.load(path, "correct horse")
    assert loaded.public == keys.public and loaded.sm9_key.point == keys.sm9_key.point
    with pytest.raises(SM9KeyError) as wrong:
        RecipientKeys.load(path, "wrong")
    assert seed_hex not in str(wrong.value)


def test_edited_header_is_refused(tmp_path: Path, members: list[RecipientKeys]) -> None:
    path = tmp_path / "member.keys"
    members[0].save(path, "pw")
    document = json.loads(path.read_text())
    document["public"]["mlkem768_public"] = members[1].public.mlkem_public.hex()
    path.write_text(json.dumps(document))
    with pytest.raises(SM9KeyError):  # the header is the AEAD's associated data
        RecipientKeys.load(path, "pw")


def test_a_signing_or_sm9_only_file_is_not_a_recipient_file(tmp_path: Path, kgc: EncryptMasterKey) -> None:
    path = tmp_path / "bob.enc.key"
    extract_encrypt_key(kgc, "Bob").save(path, "pw")
    with pytest.raises(SM9EncodingError, match="expected a 'fedledger-recipient-keys'"):
        RecipientKeys.load(path, "pw")
    assert EncryptPrivateKey.load(path, "pw").identity == b"Bob"


def test_public_card_round_trip_and_checks(members: list[RecipientKeys]) -> None:
    card = members[0].public
    assert Recipient.from_json(card.to_json()) == card
    doc = json.loads(card.to_json())
    doc["key_id"] = "00" * 16
    with pytest.raises(EnvelopeKeyError, match="key_id"):
        Recipient.from_json(json.dumps(doc))
    for bad in ("{}", "not json", json.dumps({"identity": "zz", "mlkem768_public": "00"})):
        with pytest.raises(EnvelopeKeyError):
            Recipient.from_json(bad)
    with pytest.raises(EnvelopeKeyError):
        Recipient(b"", card.mlkem_public)
    with pytest.raises(EnvelopeKeyError):
        RecipientKeys(members[0].sm9_key, b"\x00" * 32)
