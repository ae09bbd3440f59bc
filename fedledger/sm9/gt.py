"""Exponentiation in GT (the order-N subgroup of Fp12*, inside the cyclotomic subgroup).

In GT, inversion is conjugation and the p-power Frobenius equals exponentiation by p mod N = 6t^2
(~2^128). Splitting an exponent e = e0 + e1 * (p mod N) halves the squarings (``gt_multi_pow``);
a fixed base such as g = e(P1, Ppub) gets a 64 x 16 table (``GTFixedBase``): 64 multiplications.
"""

from __future__ import annotations

from fedledger.sm9.fields import (
    FP12_ONE,
    Fp12,
    N,
    P,
    fp12_conj,
    fp12_cyclotomic_sqr,
    fp12_frobenius,
    fp12_mul,
)

_FROB_EXPONENT = int(P) % int(N)  # a^p = a^(6t^2) for a in GT


def gt_multi_pow(pairs: list[tuple[Fp12, int]]) -> Fp12:
    """prod a_i^(e_i) for a_i in GT, sharing the squarings (Straus, 4-bit windows, Frobenius split)."""
    bases: list[Fp12] = []
    exps: list[int] = []
    for base, e in pairs:
        e = int(e) % int(N)
        if e == 0:
            continue
        hi, lo = divmod(e, _FROB_EXPONENT)
        if lo:
            bases.append(base)
            exps.append(lo)
        if hi:
            bases.append(fp12_frobenius(base, 1))
            exps.append(hi)
    tables: list[list[Fp12]] = []
    for base in bases:
        table = [FP12_ONE, base]
        for _ in range(14):
            table.append(fp12_mul(table[-1], base))
        tables.append(table)
    top = max((e.bit_length() for e in exps), default=0)
    result = FP12_ONE
    started = False
    for shift in range((top + 3) // 4 * 4 - 4, -1, -4):
        if started:
            for _ in range(4):
                result = fp12_cyclotomic_sqr(result)
        for table, e in zip(tables, exps, strict=True):
            digit = (e >> shift) & 15
            if digit:
                result = fp12_mul(result, table[digit])
                started = True
    return result


def gt_pow(base: Fp12, e: int) -> Fp12:
    """base^e for base in GT."""
    return gt_multi_pow([(base, e)])


class GTFixedBase:
    """Precomputed base^(j * 16^i): an exponentiation costs at most 64 multiplications."""

    __slots__ = ("_rows",)

    def __init__(self, base: Fp12) -> None:
        self._rows: list[list[Fp12]] = []
        row_base = base
        for _ in range(64):
            row = [FP12_ONE, row_base]
            for _ in range(14):
                row.append(fp12_mul(row[-1], row_base))
            self._rows.append(row)
            row_base = fp12_mul(row[-1], row_base)

    def pow(self, e: int) -> Fp12:
        e = int(e) % int(N)
        result = FP12_ONE
        i = 0
        while e:
            digit = e & 15
            if digit:
                result = fp12_mul(result, self._rows[i][digit])
            e >>= 4
            i += 1
        return result


def gt_inverse(a: Fp12) -> Fp12:
    return fp12_conj(a)
