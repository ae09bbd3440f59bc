"""The SM9 groups: G1 = E(Fp) with y^2 = x^3 + 5, and G2 on the twist y^2 = x^3 + 5u over Fp2.

Points are affine tuples ``(x, y)`` with ``None`` for the point at infinity. Affine arithmetic with
one gmpy2 inversion per step costs about what projective formulas cost in Python, and it keeps the
Miller loop's line functions simple. Fixed-base tables (``FixedBase``) make multiples of P1 and P2
a run of ~64 additions instead of ~256 doublings and ~64 additions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from gmpy2 import mpz

from fedledger.sm9.fields import (
    FP2_ZERO,
    Fp2,
    N,
    P,
    fp2_add,
    fp2_inv,
    fp2_mul,
    fp2_neg,
    fp2_sqr,
    fp2_sub,
    fp_inv,
)

G1Point = tuple[Any, Any] | None
G2Point = tuple[Fp2, Fp2] | None

B1 = mpz(5)
_ONE_MPZ = mpz(1)
B2: Fp2 = (mpz(0), mpz(5))  # 5u

P1: G1Point = (
    mpz(0x93DE051D62BF718FF5ED0704487D01D6E1E4086909DC3280E8C4E4817C66DDDD),
    mpz(0x21FE8DDA4F21E607631065125C395BBC1C1C00CBFA6024350C464CD70A3EA616),
)
P2: G2Point = (
    (
        mpz(0x3722755292130B08D2AAB97FD34EC120EE265948D19C17ABF9B7213BAF82D65B),
        mpz(0x85AEF3D078640C98597B6027B441A01FF1DD2C190F5E93C454806C11D8806141),
    ),
    (
        mpz(0xA7CF28D519BE3DA65F3170153D278FF247EFBA98A71A08116215BBA5C999A7C7),
        mpz(0x17509B092E845C1266BA0D262CBEE6ED0736A96FA347C8BD856DC76B84EBEB96),
    ),
)

# ---------------------------------------------------------------- G1


def g1_is_on_curve(pt: G1Point) -> bool:
    if pt is None:
        return True
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x - B1) % P == 0


def g1_neg(pt: G1Point) -> G1Point:
    return None if pt is None else (pt[0], (-pt[1]) % P)


def g1_double(pt: G1Point) -> G1Point:
    if pt is None or pt[1] == 0:
        return None
    x, y = pt
    lam = (3 * x * x * fp_inv(2 * y)) % P
    x3 = (lam * lam - 2 * x) % P
    return (x3, (lam * (x - x3) - y) % P)


def g1_add(a: G1Point, b: G1Point) -> G1Point:
    if a is None:
        return b
    if b is None:
        return a
    x1, y1 = a
    x2, y2 = b
    if x1 == x2:
        return g1_double(a) if y1 == y2 else None
    lam = ((y2 - y1) * fp_inv(x2 - x1)) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


# ---------------------------------------------------------------- G2 (twist)


def g2_is_on_curve(pt: G2Point) -> bool:
    if pt is None:
        return True
    x, y = pt
    if not all(0 <= c < P for c in (*x, *y)):
        return False
    return fp2_sub(fp2_sqr(y), fp2_add(fp2_mul(fp2_sqr(x), x), B2)) == FP2_ZERO


def g2_neg(pt: G2Point) -> G2Point:
    return None if pt is None else (pt[0], fp2_neg(pt[1]))


def g2_double(pt: G2Point) -> G2Point:
    if pt is None or pt[1] == FP2_ZERO:
        return None
    x, y = pt
    xx = fp2_sqr(x)
    lam = fp2_mul((3 * xx[0], 3 * xx[1]), fp2_inv((2 * y[0], 2 * y[1])))
    x3 = fp2_sub(fp2_sqr(lam), (2 * x[0], 2 * x[1]))
    return (x3, fp2_sub(fp2_mul(lam, fp2_sub(x, x3)), y))


def g2_add(a: G2Point, b: G2Point) -> G2Point:
    if a is None:
        return b
    if b is None:
        return a
    x1, y1 = a
    x2, y2 = b
    if x1 == x2:
        return g2_double(a) if y1 == y2 else None
    lam = fp2_mul(fp2_sub(y2, y1), fp2_inv(fp2_sub(x2, x1)))
    x3 = fp2_sub(fp2_sub(fp2_sqr(lam), x1), x2)
    return (x3, fp2_sub(fp2_mul(lam, fp2_sub(x1, x3)), y1))


# ---------------------------------------------------------------- scalar multiplication

PointT = TypeVar("PointT", G1Point, G2Point)


def _window_mul(
    pt: PointT, k: int, add: Callable[[PointT, PointT], PointT], dbl: Callable[[PointT], PointT]
) -> PointT:
    """[k]pt with a 4-bit fixed window (~256 doublings, ~64 additions)."""
    k = int(k) % int(N)
    if k == 0 or pt is None:
        return None
    table: list[PointT] = [None, pt]
    for _ in range(14):
        table.append(add(table[-1], pt))
    result: PointT = None
    for shift in range((k.bit_length() + 3) // 4 * 4 - 4, -1, -4):
        for _ in range(4):
            result = dbl(result)
        digit = (k >> shift) & 15
        if digit:
            result = add(result, table[digit])
    return result


def g1_multi_mul(pairs: list[tuple[G1Point, int]]) -> G1Point:
    """sum [k_i]P_i (Straus: the ~256 doublings are shared), Jacobian accumulator, affine tables.

    Jacobian doubling and mixed addition cost a few gmpy2 products and no inversion, which beats
    affine steps (one inversion each) by ~2x in Python.
    """
    tables: list[list[G1Point]] = []
    scalars: list[int] = []
    for pt, k in pairs:
        k = int(k) % int(N)
        if k == 0 or pt is None:
            continue
        table: list[G1Point] = [None, pt]
        for _ in range(14):
            table.append(g1_add(table[-1], pt))
        tables.append(table)
        scalars.append(k)
    if not scalars:
        return None
    top = max(k.bit_length() for k in scalars)
    x1, y1, z1 = _ONE_MPZ, _ONE_MPZ, mpz(0)  # Z = 0: the point at infinity
    for shift in range((top + 3) // 4 * 4 - 4, -1, -4):
        if z1:
            for _ in range(4):  # dbl-2009-l
                a = x1 * x1 % P
                b = y1 * y1 % P
                c = b * b % P
                d = 2 * ((x1 + b) * (x1 + b) - a - c) % P
                e = 3 * a
                x3 = (e * e - 2 * d) % P
                z1 = 2 * y1 * z1 % P
                y1 = (e * (d - x3) - 8 * c) % P
                x1 = x3
        for table, k in zip(tables, scalars, strict=True):
            digit = (k >> shift) & 15
            if not digit:
                continue
            x2, y2 = table[digit]  # type: ignore[misc]
            if not z1:
                x1, y1, z1 = x2, y2, _ONE_MPZ
                continue
            z1z1 = z1 * z1 % P  # madd-2007-bl
            h = (x2 * z1z1 - x1) % P
            r = 2 * (y2 * z1 * z1z1 - y1) % P
            if h == 0:
                if r == 0:  # same point: double it (affine, rare)
                    zi = fp_inv(z1)
                    dbl = g1_double((x1 * zi * zi % P, y1 * zi * zi * zi % P))
                    x1, y1, z1 = (dbl[0], dbl[1], _ONE_MPZ) if dbl else (_ONE_MPZ, _ONE_MPZ, mpz(0))
                else:
                    x1, y1, z1 = _ONE_MPZ, _ONE_MPZ, mpz(0)
                continue
            hh = h * h % P
            i = 4 * hh
            j = h * i % P
            v = x1 * i % P
            x3 = (r * r - j - 2 * v) % P
            y1 = (r * (v - x3) - 2 * y1 * j) % P
            z1 = ((z1 + h) * (z1 + h) - z1z1 - hh) % P
            x1 = x3
    if not z1:
        return None
    zi = fp_inv(z1)
    zi2 = zi * zi % P
    return (x1 * zi2 % P, y1 * zi2 * zi % P)


def g1_mul(pt: G1Point, k: int) -> G1Point:
    return g1_multi_mul([(pt, k)])


def g2_mul(pt: G2Point, k: int) -> G2Point:
    return _window_mul(pt, k, g2_add, g2_double)


def g2_mul_unreduced(pt: G2Point, k: int) -> G2Point:
    """[k]pt without reducing k mod N first: used for the subgroup check [N]Q = O."""
    result: G2Point = None
    addend = pt
    while k:
        if k & 1:
            result = g2_add(result, addend)
        addend = g2_double(addend)
        k >>= 1
    return result


def g2_in_subgroup(pt: G2Point) -> bool:
    return g2_is_on_curve(pt) and pt is not None and g2_mul_unreduced(pt, int(N)) is None


class FixedBase(Generic[PointT]):
    """Precomputed [j * 16^i] B for i < 64, j < 16: a multiple of B costs at most 64 additions."""

    def __init__(self, base: PointT, add: Callable[[PointT, PointT], PointT]) -> None:
        self._add: Callable[[PointT, PointT], PointT] = add
        self._rows: list[list[PointT]] = []
        row_base = base
        for _ in range(64):
            row: list[PointT] = [None, row_base]
            for _ in range(14):
                row.append(add(row[-1], row_base))
            self._rows.append(row)
            row_base = add(row[-1], row_base)  # 16 * row_base

    def mul(self, k: int) -> PointT:
        k = int(k) % int(N)
        result: PointT = None
        i = 0
        while k:
            digit = k & 15
            if digit:
                result = self._add(result, self._rows[i][digit])
            k >>= 4
            i += 1
        return result


_P1_TABLE: FixedBase[G1Point] | None = None
_P2_TABLE: FixedBase[G2Point] | None = None


def p1_mul(k: int) -> G1Point:
    """[k]P1 from a table built on first use."""
    global _P1_TABLE
    if _P1_TABLE is None:
        _P1_TABLE = FixedBase(P1, g1_add)
    return _P1_TABLE.mul(k)


def p2_mul(k: int) -> G2Point:
    """[k]P2 from a table built on first use."""
    global _P2_TABLE
    if _P2_TABLE is None:
        _P2_TABLE = FixedBase(P2, g2_add)
    return _P2_TABLE.mul(k)
