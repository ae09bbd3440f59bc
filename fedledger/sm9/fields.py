"""Finite fields of the SM9 BN curve: Fp, Fp2 and the degree-12 extension Fp12.

The standard builds Fp12 as a tower Fp2 = Fp[u]/(u^2+2), Fp4 = Fp2[v]/(v^2-u), Fp12 = Fp4[w]/(w^3-v).
Since w^3 = v, v^2 = u and u^2 = -2, the same field is Fp[w]/(w^12 + 2); we store an Fp12 element
as the 12 coefficients of 1, w, ..., w^11 (a "flat" tuple). That makes Frobenius maps a
coefficient-wise multiplication by constants (p = 1 mod 12) and lets the multiplication be a single
straight-line function with one reduction per coefficient (lazy reduction), which is what makes a
pure-Python pairing fast enough. The standard's tower order is only needed for byte encodings
(``to_tower_coefficients``).

Elements of Fp are gmpy2 ``mpz`` values in [0, p): gmpy2's reduction is ~3x faster than Python's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gmpy2
from gmpy2 import mpz

# Curve constants (GM/T 0044-2016 part 5, sm9bn256v1).
P = mpz(0xB640000002A3A6F1D603AB4FF58EC74521F2934B1A7AEEDBE56F9B27E351457D)
N = mpz(0xB640000002A3A6F1D603AB4FF58EC74449F2934B18EA8BEEE56EE19CD69ECF25)
T = 0x600000000058F98A  # BN parameter t
SIX_T_PLUS_2 = 6 * T + 2

Fp = Any  # an mpz in [0, P)
Fp2 = tuple[Any, Any]  # a0 + a1*u
Fp12 = tuple[Any, ...]  # 12 coefficients of w^0 .. w^11

_ZERO = mpz(0)
_ONE = mpz(1)


def fp_inv(a: Fp) -> Fp:
    """Inverse in Fp (gmpy2.invert is ~10x faster than pow(a, -1, p))."""
    if a % P == 0:
        raise ZeroDivisionError("inverse of zero in Fp")
    return gmpy2.invert(a, P)


# ---------------------------------------------------------------- Fp2 = Fp[u]/(u^2 + 2)

FP2_ZERO: Fp2 = (_ZERO, _ZERO)
FP2_ONE: Fp2 = (_ONE, _ZERO)


def fp2_add(a: Fp2, b: Fp2) -> Fp2:
    return ((a[0] + b[0]) % P, (a[1] + b[1]) % P)


def fp2_sub(a: Fp2, b: Fp2) -> Fp2:
    return ((a[0] - b[0]) % P, (a[1] - b[1]) % P)


def fp2_neg(a: Fp2) -> Fp2:
    return ((-a[0]) % P, (-a[1]) % P)


def fp2_mul(a: Fp2, b: Fp2) -> Fp2:
    a0, a1 = a
    b0, b1 = b
    return ((a0 * b0 - 2 * a1 * b1) % P, (a0 * b1 + a1 * b0) % P)


def fp2_sqr(a: Fp2) -> Fp2:
    a0, a1 = a
    return ((a0 * a0 - 2 * a1 * a1) % P, (2 * a0 * a1) % P)


def fp2_mul_fp(a: Fp2, k: Fp) -> Fp2:
    return ((a[0] * k) % P, (a[1] * k) % P)


def fp2_inv(a: Fp2) -> Fp2:
    """1/(a0 + a1 u) = (a0 - a1 u) / (a0^2 + 2 a1^2)."""
    a0, a1 = a
    norm_inv = fp_inv(a0 * a0 + 2 * a1 * a1)
    return ((a0 * norm_inv) % P, (-a1 * norm_inv) % P)


def fp2_is_zero(a: Fp2) -> bool:
    return a[0] == 0 and a[1] == 0


# ---------------------------------------------------------------- Fp12 = Fp[w]/(w^12 + 2)

FP12_ONE: Fp12 = (_ONE,) + (_ZERO,) * 11


def _generate(name: str, args: str, body: list[str]) -> Callable[..., Fp12]:
    """Compile a straight-line function; loops over 144 products would cost more than the products."""
    source = f"def {name}({args}):\n" + "".join(f"    {line}\n" for line in body)
    namespace: dict[str, Any] = {"P": P}
    exec(compile(source, f"<sm9 {name}>", "exec"), namespace)  # noqa: S102 - generated from constants only
    return namespace[name]


def _sum(terms: list[str]) -> str:
    return " + ".join(terms) if terms else "0"


def _gen_mul() -> Callable[..., Fp12]:
    unpack = [
        ", ".join(f"a{i}" for i in range(12)) + " = a",
        ", ".join(f"b{i}" for i in range(12)) + " = b",
    ]
    coeffs = []
    for k in range(12):
        low = [f"a{i}*b{k - i}" for i in range(k + 1)]
        high = [f"a{i}*b{k + 12 - i}" for i in range(k + 1, 12)]
        expr = _sum(low) + (f" - 2*({_sum(high)})" if high else "")
        coeffs.append(f"({expr}) % P")
    return _generate("fp12_mul", "a, b", [*unpack, "return (" + ", ".join(coeffs) + ",)"])


def _gen_sqr() -> Callable[..., Fp12]:
    body = [", ".join(f"a{i}" for i in range(12)) + " = a"]
    body += [f"d{i} = a{i} + a{i}" for i in range(12)]

    def half(total: int) -> list[str]:
        terms = []
        for i in range(12):
            j = total - i
            if i < j <= 11:
                terms.append(f"a{i}*d{j}")
            elif i == j:
                terms.append(f"a{i}*a{i}")
        return terms

    coeffs = []
    for k in range(12):
        high = half(k + 12)
        expr = _sum(half(k)) + (f" - 2*({_sum(high)})" if high else "")
        coeffs.append(f"({expr}) % P")
    body.append("return (" + ", ".join(coeffs) + ",)")
    return _generate("fp12_sqr", "a", body)


def _gen_mul_line() -> Callable[..., Fp12]:
    """f * (l0 + l2 w^2 + w^3 + l6 w^6 + l8 w^8): the shape of a Miller-loop line divided by y_P."""
    body = [", ".join(f"a{i}" for i in range(12)) + " = a"]
    line = {0: "l0", 2: "l2", 3: None, 6: "l6", 8: "l8"}
    coeffs = []
    for k in range(12):
        low: list[str] = []
        high: list[str] = []
        for pos, name in line.items():
            for target, bucket in ((k, low), (k + 12, high)):
                i = target - pos
                if 0 <= i <= 11:
                    bucket.append(f"a{i}" if name is None else f"a{i}*{name}")
        expr = _sum(low) + (f" - 2*({_sum(high)})" if high else "")
        coeffs.append(f"({expr}) % P")
    body.append("return (" + ", ".join(coeffs) + ",)")
    return _generate("fp12_mul_line", "a, l0, l2, l6, l8", body)


fp12_mul: Callable[[Fp12, Fp12], Fp12] = _gen_mul()
fp12_sqr: Callable[[Fp12], Fp12] = _gen_sqr()
fp12_mul_line: Callable[[Fp12, Fp, Fp, Fp, Fp], Fp12] = _gen_mul_line()

# Frobenius: w^p = gamma * w with gamma = (-2)^((p-1)/12) in Fp,
# so (sum a_i w^i)^(p^k) = sum a_i gamma^(k i) w^i.
_GAMMA = pow(mpz(-2) % P, (P - 1) // 12, P)
_FROB = [tuple(pow(_GAMMA, k * i, P) for i in range(12)) for k in range(12)]


def fp12_frobenius(a: Fp12, power: int = 1) -> Fp12:
    """a^(p^power)."""
    consts = _FROB[power % 12]
    return tuple((x * c) % P for x, c in zip(a, consts, strict=True))


def fp12_conj(a: Fp12) -> Fp12:
    """a^(p^6): negates the odd powers of w (gamma^6 = -1). In the cyclotomic subgroup this is 1/a."""
    return tuple(x if i % 2 == 0 else (-x) % P for i, x in enumerate(a))


def fp12_inv(a: Fp12) -> Fp12:
    """Inverse through norms down the tower Fp12 -> Fp6 (w^2) -> Fp3 (w^4) -> Fp."""
    if all(x == 0 for x in a):
        raise ZeroDivisionError("inverse of zero in Fp12")
    a_bar = fp12_conj(a)
    g = fp12_mul(a, a_bar)  # only even powers of w
    g_sigma = tuple(x if i % 4 == 0 else (-x) % P for i, x in enumerate(g))  # w^2 -> -w^2
    h = fp12_mul(g, g_sigma)  # only powers of w^4 =: y, y^3 = -2
    c0, c1, c2 = h[0], h[4], h[8]
    xi = -2
    big_a = c0 * c0 - xi * c1 * c2
    big_b = xi * c2 * c2 - c0 * c1
    big_c = c1 * c1 - c0 * c2
    norm = (c0 * big_a + xi * (c2 * big_b + c1 * big_c)) % P
    f = fp_inv(norm)
    h_inv = [_ZERO] * 12
    h_inv[0], h_inv[4], h_inv[8] = (big_a * f) % P, (big_b * f) % P, (big_c * f) % P
    return fp12_mul(fp12_mul(a_bar, g_sigma), tuple(h_inv))


def fp12_pow(a: Fp12, e: int) -> Fp12:
    """Generic square-and-multiply (for tests and setup; hot paths use the cyclotomic helpers)."""
    if e < 0:
        return fp12_pow(fp12_inv(a), -e)
    result = FP12_ONE
    for bit in bin(e)[2:]:
        result = fp12_sqr(result)
        if bit == "1":
            result = fp12_mul(result, a)
    return result


def fp12_is_one(a: Fp12) -> bool:
    return a[0] == 1 and all(x == 0 for x in a[1:])


# The standard's tower position of each flat coefficient: a = sum_i a_i w^i (Fp4 a_i),
# a_i = b_i0 + b_i1 v (Fp2), b = c0 + c1 u (Fp); w^(i + 3j + 6k) is coefficient c_k of b_ij of a_i.
# Byte order (GmSSL sm9_z256_fp12_to_bytes, highest first): a2, a1, a0; inside, b1 then b0;
# inside, c1 then c0.
TOWER_BYTE_ORDER: tuple[int, ...] = tuple(
    i + 3 * j + 6 * k for i in (2, 1, 0) for j in (1, 0) for k in (1, 0)
)


def fp12_to_bytes(a: Fp12) -> bytes:
    """384-byte encoding in the standard's order (the input of H2)."""
    return b"".join(int(a[pos]).to_bytes(32, "big") for pos in TOWER_BYTE_ORDER)


def fp12_from_bytes(data: bytes) -> Fp12:
    if len(data) != 384:
        raise ValueError(f"an Fp12 element is 384 bytes, got {len(data)}")
    coeffs = [_ZERO] * 12
    for n, pos in enumerate(TOWER_BYTE_ORDER):
        value = int.from_bytes(data[32 * n : 32 * n + 32], "big")
        if value >= P:
            raise ValueError("Fp12 coefficient not below p")
        coeffs[pos] = mpz(value)
    return tuple(coeffs)


def _fp4_sqr(x0: Fp, x1: Fp, y0: Fp, y1: Fp) -> tuple[Fp, Fp, Fp, Fp]:
    """(X0 + X1 v)^2 in Fp4 for X0 = x0 + x1 u, X1 = y0 + y1 u (v^2 = u, u^2 = -2), unreduced."""
    return (
        x0 * x0 - 2 * x1 * x1 - 4 * y0 * y1,
        2 * x0 * x1 + y0 * y0 - 2 * y1 * y1,
        2 * (x0 * y0 - 2 * x1 * y1),
        2 * (x0 * y1 + x1 * y0),
    )


def fp12_cyclotomic_sqr(f: Fp12) -> Fp12:
    """Squaring for elements of the cyclotomic subgroup (after the easy part of the final exponentiation).

    Granger-Scott (PKC 2010): with Fp12 = Fp4[w]/(w^3 - v) and f = g + h w + i w^2,
    f^2 = (3g^2 - 2 conj(g)) + (3 v i^2 + 2 conj(h)) w + (3h^2 - 2 conj(i)) w^2, conj(a0 + a1 v) = a0 - a1 v.
    Three Fp4 squarings (~36 products) instead of 78.
    """
    f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11 = f
    g0, g1, g2, g3 = _fp4_sqr(f0, f6, f3, f9)  # g^2 = (g0 + g1 u) + (g2 + g3 u) v
    h0, h1, h2, h3 = _fp4_sqr(f1, f7, f4, f10)
    i0, i1, i2, i3 = _fp4_sqr(f2, f8, f5, f11)
    # v * i^2 = u*(i2 + i3 u) + (i0 + i1 u) v = (-2 i3 + i2 u) + (i0 + i1 u) v
    return (
        (3 * g0 - 2 * f0) % P,  # w^0
        (-6 * i3 + 2 * f1) % P,  # w^1
        (3 * h0 - 2 * f2) % P,  # w^2
        (3 * g2 + 2 * f3) % P,  # w^3
        (3 * i0 - 2 * f4) % P,  # w^4
        (3 * h2 + 2 * f5) % P,  # w^5
        (3 * g1 - 2 * f6) % P,  # w^6
        (3 * i2 + 2 * f7) % P,  # w^7
        (3 * h1 - 2 * f8) % P,  # w^8
        (3 * g3 + 2 * f9) % P,  # w^9
        (3 * i1 - 2 * f10) % P,  # w^10
        (3 * h3 + 2 * f11) % P,  # w^11
    )
