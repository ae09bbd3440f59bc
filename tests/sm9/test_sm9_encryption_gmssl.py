"""Interoperability of SM9 encryption with the real GmSSL 3.2 (statically linked in gmssl-pyx).

Keys and ciphertexts cross in both directions: master key and master public key DER/PEM, user
decryption key DER, and DER ciphertexts made here open in GmSSL and the other way round.
"""

from __future__ import annotations

import json
from pathlib import Path

import gmssl_pyx as gmssl  # pinned dev dependency: a missing GmSSL fails here, it is not skipped
import pytest

from fedledger.sm9.encryption import MAC_HMAC_SM3, MAC_SM3, SM9DecryptionError, decrypt, encrypt
from fedledger.sm9.encryption_keys import (
    EncryptMasterKey,
    EncryptMasterPublicKey,
    EncryptPrivateKey,
    extract_encrypt_key,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sm9_encrypt_vectors.json").read_text())


@pytest.fixture(scope="module")
def master() -> EncryptMasterKey:
    return EncryptMasterKey(int(VECTORS["key_extraction"]["ke"], 16))


def test_gmssl_reads_our_master_key_and_extracts_the_same_user_key(master: EncryptMasterKey) -> None:
    theirs = gmssl.SM9MasterKey.from_der(master.to_der())
    assert theirs.public_key().to_der() == master.public_key.to_der()
    assert theirs.extract_key(b"Bob").to_der() == extract_encrypt_key(master, "Bob").to_der()


def test_we_read_gmssls_master_key_and_public_key_pem(tmp_path: Path) -> None:
    theirs = gmssl.SM9MasterKey.generate()
    ours = EncryptMasterKey.from_der(theirs.to_der())
    pem = tmp_path / "mpk.pem"
    theirs.public_key().to_pem(str(pem))
    assert EncryptMasterPublicKey.load(pem) == ours.public_key
    ours.public_key.save(tmp_path / "ours.pem")
    assert gmssl.SM9MasterPublicKey.from_pem(str(tmp_path / "ours.pem")).to_der() == ours.public_key.to_der()
    their_key = theirs.extract_key(b"hospital-3")
    assert EncryptPrivateKey.from_der("hospital-3", their_key.to_der()).to_der() == their_key.to_der()


@pytest.mark.parametrize("message", [b"k", b"a 32-byte content key, exactly!!", bytes(range(255))])
def test_ciphertexts_cross_both_ways(master: EncryptMasterKey, message: bytes) -> None:
    bob = extract_encrypt_key(master, "Bob")
    their_master = gmssl.SM9MasterKey.from_der(master.to_der())
    ours = encrypt(master.public_key, "Bob", message, mac=MAC_HMAC_SM3).to_der()
    assert their_master.extract_key(b"Bob").decrypt(b"Bob", ours) == message
    theirs = their_master.public_key().encrypt(b"Bob", message)
    assert decrypt(bob, theirs, mac=MAC_HMAC_SM3) == message


def test_gmssl_uses_hmac_sm3_where_the_standard_uses_sm3(master: EncryptMasterKey) -> None:
    """GmSSL 3.x's C3 is HMAC-SM3(K2, C2), not the standard's SM3(C2 || K2): the two do not mix."""
    bob = extract_encrypt_key(master, "Bob")
    theirs = gmssl.SM9MasterKey.from_der(master.to_der()).public_key().encrypt(b"Bob", b"message")
    with pytest.raises(SM9DecryptionError):
        decrypt(bob, theirs, mac=MAC_SM3)
    standard = encrypt(master.public_key, "Bob", b"message", mac=MAC_SM3).to_der()
    with pytest.raises(gmssl.GmsslInnerError):
        gmssl.SM9MasterKey.from_der(master.to_der()).extract_key(b"Bob").decrypt(b"Bob", standard)


def test_gmssl_refuses_our_ciphertext_for_another_identity(master: EncryptMasterKey) -> None:
    ours = encrypt(master.public_key, "Bob", b"secret", mac=MAC_HMAC_SM3).to_der()
    with pytest.raises(gmssl.GmsslInnerError):
        gmssl.SM9MasterKey.from_der(master.to_der()).extract_key(b"Alice").decrypt(b"Alice", ours)
