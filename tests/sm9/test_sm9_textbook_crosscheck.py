"""An independent, deliberately naive SM9 verifier, used to cross-check the fast implementation.

It shares no code with fedledger.sm9 except the byte strings it is given: the field is the standard's
tower (Fp2 = Fp[u]/(u^2+2), Fp4 = Fp2[v]/(v^2-u), Fp12 = Fp4[w]/(w^3-v)) with schoolbook products,
G2 points are untwisted into E(Fp12) and handled with textbook affine formulas there, the Frobenius
images come from plain exponentiation by p, the final exponentiation is a plain power by
(p^12 - 1)/N, and SM3 comes from gmssl. It first proves itself on the standard's worked example
(sm9_vectors.json), then checks signatures produced by fedledger (plain and threshold) from their
PEM / ID / DER encodings alone: the "any other correct SM9 implementation" check of issue 5.
"""

from __future__ import annotations

import base64

import pytest
from gmssl import func as gmssl_func
from gmssl import sm3 as gmssl_sm3

from fedledger.sm9 import SignMasterKey, extract_sign_key, sign
from fedledger.sm9.threshold import split_key, threshold_sign_local

p = 0xB640000002A3A6F1D603AB4FF58EC74521F2934B1A7AEEDBE56F9B27E351457D
n = 0xB640000002A3A6F1D603AB4FF58EC74449F2934B18EA8BEEE56EE19CD69ECF25
t = 0x600000000058F98A

# ---- the tower, as the standard writes it


def f2_add(a, b):
    return ((a[0] + b[0]) % p, (a[1] + b[1]) % p)


def f2_sub(a, b):
    return ((a[0] - b[0]) % p, (a[1] - b[1]) % p)


def f2_mul(a, b):  # u^2 = -2
    return ((a[0] * b[0] - 2 * a[1] * b[1]) % p, (a[0] * b[1] + a[1] * b[0]) % p)


def f2_mul_u(a):
    return ((-2 * a[1]) % p, a[0])


def f2_inv(a):
    d = pow((a[0] * a[0] + 2 * a[1] * a[1]) % p, p - 2, p)
    return (a[0] * d % p, -a[1] * d % p)


Z2, O2 = (0, 0), (1, 0)


def f4_add(a, b):
    return (f2_add(a[0], b[0]), f2_add(a[1], b[1]))


def f4_sub(a, b):
    return (f2_sub(a[0], b[0]), f2_sub(a[1], b[1]))


def f4_mul(a, b):  # v^2 = u
    return (
        f2_add(f2_mul(a[0], b[0]), f2_mul_u(f2_mul(a[1], b[1]))),
        f2_add(f2_mul(a[0], b[1]), f2_mul(a[1], b[0])),
    )


def f4_mul_v(a):
    return (f2_mul_u(a[1]), a[0])


def f4_inv(a):
    d = f2_inv(f2_sub(f2_mul(a[0], a[0]), f2_mul_u(f2_mul(a[1], a[1]))))
    return (f2_mul(a[0], d), f2_mul(f2_sub(Z2, a[1]), d))


Z4, O4 = (Z2, Z2), (O2, Z2)


def f12_add(a, b):
    return tuple(f4_add(x, y) for x, y in zip(a, b, strict=True))


def f12_sub(a, b):
    return tuple(f4_sub(x, y) for x, y in zip(a, b, strict=True))


def f12_mul(a, b):  # w^3 = v
    c = [Z4] * 5
    for i in range(3):
        for j in range(3):
            c[i + j] = f4_add(c[i + j], f4_mul(a[i], b[j]))
    return (f4_add(c[0], f4_mul_v(c[3])), f4_add(c[1], f4_mul_v(c[4])), c[2])


def f12_inv(a):
    a0, a1, a2 = a
    big_a = f4_sub(f4_mul(a0, a0), f4_mul_v(f4_mul(a1, a2)))
    big_b = f4_sub(f4_mul_v(f4_mul(a2, a2)), f4_mul(a0, a1))
    big_c = f4_sub(f4_mul(a1, a1), f4_mul(a0, a2))
    f = f4_add(f4_mul(a0, big_a), f4_mul_v(f4_add(f4_mul(a2, big_b), f4_mul(a1, big_c))))
    fi = f4_inv(f)
    return (f4_mul(big_a, fi), f4_mul(big_b, fi), f4_mul(big_c, fi))


def f12_pow(a, e):
    r = ONE
    for bit in bin(e)[2:]:
        r = f12_mul(r, r)
        if bit == "1":
            r = f12_mul(r, a)
    return r


ONE = (O4, Z4, Z4)


def f12_from_fp(x):
    return (((x % p, 0), Z2), Z4, Z4)


def f12_to_bytes(a):  # a2, a1, a0; each Fp4 b1, b0; each Fp2 c1, c0
    out = b""
    for a_i in (a[2], a[1], a[0]):
        for b_j in (a_i[1], a_i[0]):
            out += b_j[1].to_bytes(32, "big") + b_j[0].to_bytes(32, "big")
    return out


# ---- E(Fp12): y^2 = x^3 + 5, affine, None = infinity


def e_add(P, Q):
    if P is None:
        return Q
    if Q is None:
        return P
    if P[0] == Q[0]:
        if P[1] != Q[1]:
            return None
        lam = f12_mul(f12_mul(f12_from_fp(3), f12_mul(P[0], P[0])), f12_inv(f12_add(P[1], P[1])))
    else:
        lam = f12_mul(f12_sub(Q[1], P[1]), f12_inv(f12_sub(Q[0], P[0])))
    x3 = f12_sub(f12_sub(f12_mul(lam, lam), P[0]), Q[0])
    return (x3, f12_sub(f12_mul(lam, f12_sub(P[0], x3)), P[1]))


def e_mul(P, k):
    R = None
    for bit in bin(k)[2:]:
        R = e_add(R, R)
        if bit == "1":
            R = e_add(R, P)
    return R


def untwist(x1, x0, y1, y0):
    """(x', y') on y^2 = x^3 + 5u -> (x' w^-2, y' w^-3) on y^2 = x^3 + 5; w^-2 = -uvw/2, w^-3 = -uv/2."""
    half = (-pow(2, p - 2, p)) % p
    w_m2 = (Z4, (Z2, (0, half)), Z4)  # -1/2 * u v w: the w coefficient is the Fp4 element (-1/2) u v
    w_m3 = ((Z2, (0, half)), Z4, Z4)  # -1/2 * u v
    x = (((x0, x1), Z2), Z4, Z4)
    y = (((y0, y1), Z2), Z4, Z4)
    return (f12_mul(x, w_m2), f12_mul(y, w_m3))


def line(U, V, Q):
    """g_{U,V}(Q) of the standard: through U and V (tangent if U = V), evaluated at Q."""
    if U[0] == V[0] and U[1] == V[1]:
        lam = f12_mul(f12_mul(f12_from_fp(3), f12_mul(U[0], U[0])), f12_inv(f12_add(U[1], U[1])))
    else:
        lam = f12_mul(f12_sub(V[1], U[1]), f12_inv(f12_sub(V[0], U[0])))
    return f12_sub(f12_mul(lam, f12_sub(Q[0], V[0])), f12_sub(Q[1], V[1]))


def frob(P):
    return (f12_pow(P[0], p), f12_pow(P[1], p))


def rate_pairing(P_g1, Q):
    """The standard's R-ate pairing e(P, Q), loop 6t+2, P in G1 (embedded), Q in E(Fp12)."""
    P = (f12_from_fp(P_g1[0]), f12_from_fp(P_g1[1]))
    a = 6 * t + 2
    T, f = Q, ONE
    for bit in bin(a)[3:]:
        f = f12_mul(f12_mul(f, f), line(T, T, P))
        T = e_add(T, T)
        if bit == "1":
            f = f12_mul(f, line(T, Q, P))
            T = e_add(T, Q)
    Q1 = frob(Q)
    Q2 = frob(Q1)
    f = f12_mul(f, line(T, Q1, P))
    T = e_add(T, Q1)
    f = f12_mul(f, line(T, (Q2[0], f12_sub(f12_from_fp(0), Q2[1])), P))
    return f12_pow(f, (p**12 - 1) // n)


# ---- hashing with gmssl's SM3


def gm_sm3(data):
    return bytes.fromhex(gmssl_sm3.sm3_hash(gmssl_func.bytes_to_list(data)))


def hash_n(prefix, z):
    ha = gm_sm3(prefix + z + b"\0\0\0\1") + gm_sm3(prefix + z + b"\0\0\0\2")
    return int.from_bytes(ha[:40], "big") % (n - 1) + 1


P1 = (
    0x93DE051D62BF718FF5ED0704487D01D6E1E4086909DC3280E8C4E4817C66DDDD,
    0x21FE8DDA4F21E607631065125C395BBC1C1C00CBFA6024350C464CD70A3EA616,
)
P2_OCTETS = bytes.fromhex(
    "0485AEF3D078640C98597B6027B441A01FF1DD2C190F5E93C454806C11D88061413722755292130B08D2AAB97FD34EC120EE265948D1"
    "9C17ABF9B7213BAF82D65B17509B092E845C1266BA0D262CBEE6ED0736A96FA347C8BD856DC76B84EBEB96A7CF28D519BE3DA65F3170"
    "153D278FF247EFBA98A71A08116215BBA5C999A7C7"
)


def g2_from_octets(octets):
    assert len(octets) == 129 and octets[0] == 4
    x1, x0, y1, y0 = (int.from_bytes(octets[1 + 32 * i : 33 + 32 * i], "big") for i in range(4))
    return untwist(x1, x0, y1, y0)


def textbook_verify(mpk_pem: str, identity: bytes, message: bytes, der: bytes) -> bool:
    body = "".join(mpk_pem.strip().splitlines()[1:-1])
    mpk_der = base64.b64decode(body)
    assert mpk_der[:7] == bytes.fromhex("30818503818200") and len(mpk_der) == 136
    ppub = g2_from_octets(mpk_der[7:])
    assert (
        len(der) == 104 and der[:4] == bytes.fromhex("30660420") and der[36:40] == bytes.fromhex("03420004")
    )
    h = int.from_bytes(der[4:36], "big")
    S = (int.from_bytes(der[40:72], "big"), int.from_bytes(der[72:104], "big"))
    if not 1 <= h < n or (S[1] ** 2 - S[0] ** 3 - 5) % p:
        return False
    g = rate_pairing(P1, ppub)
    t_val = f12_pow(g, h)
    h1 = hash_n(b"\x01", identity + b"\x01")
    Q = e_add(e_mul(g2_from_octets(P2_OCTETS), h1), ppub)
    w = f12_mul(rate_pairing(S, Q), t_val)
    return hash_n(b"\x02", message + f12_to_bytes(w)) == h


def _pem(der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    return (
        "-----BEGIN X-----\n"
        + "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        + "\n-----END X-----\n"
    )


@pytest.fixture(scope="module")
def example(sm9_vectors: dict) -> dict:
    return sm9_vectors["sign_example"]


def test_textbook_verifier_reproduces_the_standard_example(example: dict) -> None:
    """Validates the naive verifier itself against the standard before it judges fedledger's output."""
    mpk_pem = _pem(bytes.fromhex(example["master_public_key_der_gmssl_3x"]))
    der = bytes.fromhex(example["signature_der_gmssl_3x"])
    ppub = g2_from_octets(bytes.fromhex(example["Ppub_s_uncompressed_octets"]))
    assert f12_to_bytes(rate_pairing(P1, ppub)).hex().upper() == example["g_eq_e_P1_Ppubs_computed_by_gmssl"]
    assert textbook_verify(mpk_pem, b"Alice", bytes.fromhex(example["message_hex"]), der)


def test_textbook_verifier_accepts_fedledger_plain_and_threshold_signatures() -> None:
    master = SignMasterKey.generate()
    pem = master.public_key.to_pem()
    plain = sign(extract_sign_key(master, "inst:alpha"), b"update entry")
    assert textbook_verify(pem, b"inst:alpha", b"update entry", plain.to_der())
    shares, public = split_key(master, "consortium:31337:0xAbC", 3, 5)
    threshold = threshold_sign_local([shares[4], shares[0], shares[2]], public, b"round 7 record")
    assert textbook_verify(pem, b"consortium:31337:0xAbC", b"round 7 record", threshold.to_der())
    assert not textbook_verify(pem, b"consortium:31337:0xAbC", b"round 8 record", threshold.to_der())
