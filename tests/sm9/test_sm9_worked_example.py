"""The standard's worked signature example (GM/T 0044-2016 part 5), reproduced bit-exact.

Reference values come from tests/sm9/vectors/sm9_vectors.json (the standard's example, cross-checked with
GmSSL): they are independent of this implementation.
"""

from __future__ import annotations

import pytest

from fedledger.sm9 import Signature, SignMasterKey, SignMasterPublicKey, extract_sign_key, verify
from fedledger.sm9.curve import P1, P2
from fedledger.sm9.encoding import g1_to_bytes, g2_to_bytes
from fedledger.sm9.fields import fp12_to_bytes
from fedledger.sm9.hashing import h1
from fedledger.sm9.pairing import pairing
from fedledger.sm9.signature import sign_with_nonce


@pytest.fixture(scope="module")
def master(sm9_vectors: dict) -> SignMasterKey:
    return SignMasterKey(int(sm9_vectors["sign_example"]["ks"], 16))


def test_generators_encode_as_in_the_standard(sm9_vectors: dict) -> None:
    assert g1_to_bytes(P1).hex().upper() == sm9_vectors["curve"]["P1_uncompressed_octets"]
    assert g2_to_bytes(P2).hex().upper() == sm9_vectors["curve"]["P2_uncompressed_octets"]


def test_master_public_key_from_ks(sm9_vectors: dict, master: SignMasterKey) -> None:
    ex = sm9_vectors["sign_example"]
    assert g2_to_bytes(master.public_key.point).hex().upper() == ex["Ppub_s_uncompressed_octets"]
    assert master.public_key.to_der().hex().upper() == ex["master_public_key_der_gmssl_3x"]


def test_g_is_the_pairing_of_p1_and_ppub(sm9_vectors: dict, master: SignMasterKey) -> None:
    g = pairing(P1, master.public_key.point)
    assert fp12_to_bytes(g).hex().upper() == sm9_vectors["sign_example"]["g_eq_e_P1_Ppubs_computed_by_gmssl"]


def test_h1_and_user_key_for_alice(sm9_vectors: dict, master: SignMasterKey) -> None:
    ex = sm9_vectors["sign_example"]
    assert h1(bytes.fromhex(ex["ID_hex"]) + bytes.fromhex(ex["hid"])) == int(ex["h1_computed_by_gmssl"], 16)
    key = extract_sign_key(master, ex["ID"])
    assert g1_to_bytes(key.point).hex().upper() == ex["dsA_uncompressed_octets"]


def test_signature_with_the_fixed_r(sm9_vectors: dict, master: SignMasterKey) -> None:
    ex = sm9_vectors["sign_example"]
    key = extract_sign_key(master, ex["ID"])
    r = int(ex["r"], 16)
    w = master.public_key.g_pow(r)
    assert fp12_to_bytes(w).hex().upper() == ex["w_eq_g_pow_r_computed_by_gmssl"]
    signature = sign_with_nonce(key, bytes.fromhex(ex["message_hex"]), r)
    assert signature is not None
    assert signature.h == int(ex["h"], 16)
    assert (r - signature.h) % int(sm9_vectors["curve"]["N"], 16) == int(
        ex["l_eq_r_minus_h_mod_N_computed_by_gmssl"], 16
    )
    assert g1_to_bytes(signature.S).hex().upper() == ex["S_uncompressed_octets"]
    assert signature.to_der().hex().upper() == ex["signature_der_gmssl_3x"]


def test_reference_signature_verifies_from_pem_and_der_alone(sm9_vectors: dict, master: SignMasterKey) -> None:
    """Starting only from the published encodings (as another implementation would)."""
    ex = sm9_vectors["sign_example"]
    mpk = SignMasterPublicKey.from_der(bytes.fromhex(ex["master_public_key_der_gmssl_3x"]))
    mpk = SignMasterPublicKey.from_pem(mpk.to_pem())
    der = bytes.fromhex(ex["signature_der_gmssl_3x"])
    message = bytes.fromhex(ex["message_hex"])
    assert verify(mpk, ex["ID"], message, der)
    assert verify(mpk, ex["ID"], message, Signature.from_der(der))
    assert not verify(mpk, "Bob", message, der)
    assert not verify(mpk, ex["ID"], message + b"!", der)
