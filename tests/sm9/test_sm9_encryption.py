"""SM9 identity-based encryption (GM/T 0044-2016 part 4): the standard's examples bit for bit, and
every way a ciphertext, an encapsulation or a key file can be wrong.

Reference values: tests/sm9/vectors/sm9_encrypt_vectors.json (the standard's published example,
independent of this implementation).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fedledger.errors import FedLedgerError
from fedledger.sm9.encoding import g1_to_bytes, g2_to_bytes
from fedledger.sm9.encryption import (
    MAC_HMAC_SM3,
    MAC_SM3,
    Ciphertext,
    SM9DecryptionError,
    decapsulate,
    decrypt,
    encapsulate,
    encrypt,
    sm3_kdf,
)
from fedledger.sm9.encryption_keys import (
    EncryptMasterKey,
    EncryptMasterPublicKey,
    EncryptPrivateKey,
    extract_encrypt_key,
    identity_hash,
)
from fedledger.sm9.errors import SM9EncodingError, SM9KeyError

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sm9_encrypt_vectors.json").read_text())


@pytest.fixture(scope="module")
def master() -> EncryptMasterKey:
    return EncryptMasterKey(int(VECTORS["key_extraction"]["ke"], 16))


@pytest.fixture(scope="module")
def bob(master: EncryptMasterKey) -> EncryptPrivateKey:
    return extract_encrypt_key(master, "Bob")


# ------------------------------------------------------------------ the standard's examples


def test_master_public_key_is_the_standards(master: EncryptMasterKey) -> None:
    assert g1_to_bytes(master.public_key.point)[1:].hex().upper() == VECTORS["public_key"]["Ppub_e_x_y"]


def test_key_extraction_for_bob_is_bit_exact(bob: EncryptPrivateKey) -> None:
    ex = VECTORS["key_extraction"]
    assert ex["hid"] == 3 and bytes.fromhex(ex["ID_hex"]) == b"Bob"
    assert g2_to_bytes(bob.point)[1:].hex().upper() == "".join(ex["deB_x1_x0_y1_y0"])


def test_kem_example_is_bit_exact(master: EncryptMasterKey, bob: EncryptPrivateKey) -> None:
    ex = VECTORS["kem_example"]
    key, capsule = encapsulate(master.public_key, ex["ID"], ex["klen_bytes"], r=int(ex["r"], 16))
    assert capsule.hex().upper() == ex["C_x_y"]
    assert key.hex().upper() == ex["K"]
    assert decapsulate(bob, capsule, ex["klen_bytes"]) == key


def test_encryption_example_is_bit_exact(master: EncryptMasterKey, bob: EncryptPrivateKey) -> None:
    ex = VECTORS["encryption_example"]
    message = ex["message"].encode()
    ciphertext = encrypt(master.public_key, ex["ID"], message, mac=MAC_SM3, r=int(ex["r"], 16))
    assert ciphertext.to_bytes().hex().upper() == ex["C1_C3_C2"]
    assert decrypt(bob, Ciphertext.from_bytes(bytes.fromhex(ex["C1_C3_C2"]))) == message
    assert decrypt(bob, ciphertext.to_der()) == message


def test_sm3_kdf_counts_from_one() -> None:
    from fedledger.digests import sm3

    assert sm3_kdf(b"z", 40) == (sm3(b"z\x00\x00\x00\x01") + sm3(b"z\x00\x00\x00\x02"))[:40]


# ------------------------------------------------------------------ round trips and refusals


def test_round_trip_with_fresh_keys_both_macs() -> None:
    master = EncryptMasterKey.generate()
    key = extract_encrypt_key(master, "hospital-7")
    for mac in (MAC_SM3, MAC_HMAC_SM3):
        ciphertext = encrypt(master.public_key, "hospital-7", b"x" * 100, mac=mac)
        assert decrypt(key, ciphertext, mac=mac) == b"x" * 100
    other_mac = encrypt(master.public_key, "hospital-7", b"abc", mac=MAC_SM3)
    with pytest.raises(SM9DecryptionError):
        decrypt(key, other_mac, mac=MAC_HMAC_SM3)


def test_encryption_is_randomised(master: EncryptMasterKey) -> None:
    a = encrypt(master.public_key, "Bob", b"same").to_bytes()
    b = encrypt(master.public_key, "Bob", b"same").to_bytes()
    assert a != b


def test_other_identity_and_other_master_cannot_open(master: EncryptMasterKey) -> None:
    alice = extract_encrypt_key(master, "Alice")
    stranger = extract_encrypt_key(EncryptMasterKey.generate(), "Bob")
    ciphertext = encrypt(master.public_key, "Bob", b"for bob only")
    key, capsule = encapsulate(master.public_key, "Bob", 32)
    for wrong in (alice, stranger):
        with pytest.raises(SM9DecryptionError):
            decrypt(wrong, ciphertext)
        assert decapsulate(wrong, capsule, 32) != key  # a KEM has no MAC: a wrong key gives a wrong K


@pytest.mark.parametrize("position", [0, 31, 63, 64, 95, 96, 100])
def test_one_flipped_bit_anywhere_is_refused(master: EncryptMasterKey, bob: EncryptPrivateKey, position: int) -> None:
    raw = bytearray(encrypt(master.public_key, "Bob", b"five bytes of secret").to_bytes())
    raw[position] ^= 1
    with pytest.raises((SM9DecryptionError, SM9EncodingError)):  # a bad C1 is not even a point
        decrypt(bob, Ciphertext.from_bytes(bytes(raw)))


def test_malformed_inputs_give_one_error_type(bob: EncryptPrivateKey, master: EncryptMasterKey) -> None:
    good = encrypt(master.public_key, "Bob", b"m").to_der()
    for bad in (b"", b"\x30\x00", good + b"\x00", good[:-1], b"\x31" + good[1:], 123):
        with pytest.raises(SM9DecryptionError):
            decrypt(bob, bad)  # type: ignore[arg-type]
    off_curve = b"\x01" * 64
    with pytest.raises(SM9DecryptionError):
        decapsulate(bob, off_curve, 32)
    with pytest.raises(SM9EncodingError):
        decapsulate(bob, b"\x01" * 64, 0)
    with pytest.raises(SM9EncodingError):
        encrypt(master.public_key, "Bob", b"")
    with pytest.raises(SM9EncodingError):
        encrypt(master.public_key, "Bob", b"x", mac="md5")
    assert issubclass(SM9DecryptionError, FedLedgerError)


def test_der_decoders_are_strict(master: EncryptMasterKey) -> None:
    der = master.public_key.to_der()
    assert EncryptMasterPublicKey.from_der(der) == master.public_key
    for bad in (der + b"\x00", der[:-1], der[:1] + b"\x81\x44" + der[2:], der[:5] + b"\x01" + der[6:]):
        with pytest.raises(SM9EncodingError):
            EncryptMasterPublicKey.from_der(bad)
    ct = encrypt(master.public_key, "Bob", b"m").to_der()
    wrong_type = ct[:4] + b"\x01" + ct[5:]
    with pytest.raises(SM9EncodingError, match="EncryptedType"):
        Ciphertext.from_der(wrong_type)


def test_master_key_der_and_pem_round_trip(master: EncryptMasterKey) -> None:
    assert EncryptMasterKey.from_der(master.to_der()).secret_scalar() == master.secret_scalar()
    pem = master.public_key.to_pem()
    assert pem.startswith("-----BEGIN SM9 ENC MASTER PUBLIC KEY-----\n")
    assert EncryptMasterPublicKey.from_pem(pem) == master.public_key
    with pytest.raises(SM9KeyError):
        EncryptMasterKey(0)


def test_identity_hash_uses_hid_3() -> None:
    from fedledger.sm9.hashing import h1

    assert identity_hash("Bob") == h1(b"Bob\x03") != h1(b"Bob\x01")


# ------------------------------------------------------------------ key files


def test_key_files_are_0600_and_hide_the_secret(
    tmp_path: Path, master: EncryptMasterKey, bob: EncryptPrivateKey
) -> None:
    master_path, user_path = tmp_path / "enc-master.key", tmp_path / "bob.enc.key"
    master.save(master_path, "pw-1")
    bob.save(user_path, "pw-2")
    for path in (master_path, user_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"{master.secret_scalar():064x}" not in master_path.read_text()
    assert g2_to_bytes(bob.point).hex() not in user_path.read_text()
    assert EncryptMasterKey.load(master_path, "pw-1").secret_scalar() == master.secret_scalar()
    loaded = EncryptPrivateKey.load(user_path, "pw-2")
    assert loaded.point == bob.point and loaded.identity == b"Bob"
    with pytest.raises(SM9KeyError):
        EncryptPrivateKey.load(user_path, "wrong")
    with pytest.raises(SM9EncodingError):
        EncryptPrivateKey.load(master_path, "pw-1")  # a master key file is not a user key file
    assert "hidden" in repr(bob) and "hidden" in repr(master)
    assert f"{master.secret_scalar():x}" not in repr(master)


def test_a_key_read_from_bytes_must_belong_to_its_identity(master: EncryptMasterKey, bob: EncryptPrivateKey) -> None:
    assert EncryptPrivateKey.from_der("Bob", bob.to_der()).point == bob.point
    with pytest.raises(SM9KeyError, match="does not belong"):
        EncryptPrivateKey.from_der("Alice", bob.to_der())
    other_master = EncryptMasterKey.generate().public_key
    public, secret = bob.file_fields()
    public["enc_master_public_key"] = other_master.to_der().hex()
    with pytest.raises(SM9KeyError, match="does not belong"):
        EncryptPrivateKey.from_file_fields(public, secret)
