"""The R-ate pairing e: G1 x G2 -> GT of GM/T 0044-2016 (loop count 6t+2, then (p^12-1)/N).

The G2 point is untwisted as (x w^-2, y w^-3) (u = w^6). Lines are multiplied by w^3 and divided by
y_P (both factors lie in proper subfields and vanish in the final exponentiation), which leaves the
sparse shape l0 + l2 w^2 + w^3 + l6 w^6 + l8 w^8 handled by ``fp12_mul_line``. The G2 half of the
loop does not depend on P, so ``G2Lines`` precomputes it once per Q: verifying many signatures
under one identity then pays only the Fp12 part.
"""

from __future__ import annotations

from fedledger.sm9.curve import G1Point, G2Point
from fedledger.sm9.fields import (
    _GAMMA as GAMMA,
)
from fedledger.sm9.fields import (
    FP12_ONE,
    SIX_T_PLUS_2,
    Fp2,
    Fp12,
    N,
    P,
    T,
    fp2_inv,
    fp2_mul,
    fp2_mul_fp,
    fp2_sqr,
    fp2_sub,
    fp12_conj,
    fp12_cyclotomic_sqr,
    fp12_frobenius,
    fp12_inv,
    fp12_mul,
    fp12_mul_line,
    fp12_sqr,
    fp_inv,
)

_GAMMA_INV = fp_inv(GAMMA)
_GAMMA_INV2 = (_GAMMA_INV * _GAMMA_INV) % P
_GAMMA_INV3 = (_GAMMA_INV2 * _GAMMA_INV) % P
_GAMMA_INV4 = (_GAMMA_INV2 * _GAMMA_INV2) % P

# (square f before this line?, slope, slope * x_T - y_T), slope and intercept in twist coordinates
Line = tuple[bool, Fp2, Fp2]


def _conj2(a: Fp2) -> Fp2:
    return (a[0], (-a[1]) % P)


class G2Lines:
    """The lines of the Miller loop for one G2 point, independent of the G1 argument."""

    __slots__ = ("lines",)

    def __init__(self, q: G2Point) -> None:
        if q is None:
            raise ValueError("pairing with the point at infinity")
        lines: list[Line] = []
        xq, yq = q
        xt, yt = xq, yq

        def step(lam: Fp2, x1: Fp2, y1: Fp2, x2: Fp2, square_first: bool = False) -> tuple[Fp2, Fp2]:
            lines.append((square_first, lam, fp2_sub(fp2_mul(lam, x1), y1)))
            x3 = fp2_sub(fp2_sub(fp2_sqr(lam), x1), x2)
            return x3, fp2_sub(fp2_mul(lam, fp2_sub(x1, x3)), y1)

        def add(xa: Fp2, ya: Fp2, xb: Fp2, yb: Fp2) -> tuple[Fp2, Fp2]:
            lam = fp2_mul(fp2_sub(yb, ya), fp2_inv(fp2_sub(xb, xa)))
            return step(lam, xa, ya, xb)

        for n, bit in enumerate(bin(SIX_T_PLUS_2)[3:]):
            xx = fp2_sqr(xt)
            lam = fp2_mul((3 * xx[0], 3 * xx[1]), fp2_inv((2 * yt[0], 2 * yt[1])))
            xt, yt = step(lam, xt, yt, xt, square_first=n > 0)
            if bit == "1":
                xt, yt = add(xt, yt, xq, yq)
        # Q1 = pi(Q), -Q2 = -pi^2(Q) in twist coordinates (w^(p-1) = gamma lies in Fp).
        x1 = fp2_mul_fp(_conj2(xq), _GAMMA_INV2)
        y1 = fp2_mul_fp(_conj2(yq), _GAMMA_INV3)
        xt, yt = add(xt, yt, x1, y1)
        x2 = fp2_mul_fp(xq, _GAMMA_INV4)
        lam = fp2_mul(fp2_sub(yq, yt), fp2_inv(fp2_sub(x2, xt)))  # -pi^2(Q) has y = y_Q
        lines.append((False, lam, fp2_sub(fp2_mul(lam, xt), yt)))
        self.lines = lines


def miller_loop(p_point: G1Point, q_lines: G2Lines) -> Fp12:
    """f_{6t+2,Q}(P) * l_{T,pi(Q)}(P) * l_{T+pi(Q),-pi^2(Q)}(P), lines from ``q_lines``."""
    if p_point is None:
        raise ValueError("pairing with the point at infinity")
    xp, yp = p_point
    y_inv = fp_inv(yp)
    neg_xy = (-xp * y_inv) % P
    f = FP12_ONE
    for square_first, (lam0, lam1), (c0, c1) in q_lines.lines:
        if square_first:
            f = fp12_sqr(f)
        f = fp12_mul_line(f, (c0 * y_inv) % P, (lam0 * neg_xy) % P, (c1 * y_inv) % P, (lam1 * neg_xy) % P)
    return f


def _cyclotomic_pow_t(a: Fp12) -> Fp12:
    """a^t for a in the cyclotomic subgroup (t > 0)."""
    result = a
    for bit in bin(T)[3:]:
        result = fp12_cyclotomic_sqr(result)
        if bit == "1":
            result = fp12_mul(result, a)
    return result


def final_exponentiation(f: Fp12) -> Fp12:
    """f^((p^12 - 1)/N): easy part (p^6-1)(p^2+1), then the BN hard part (p^4 - p^2 + 1)/N."""
    f = fp12_mul(fp12_conj(f), fp12_inv(f))
    f = fp12_mul(fp12_frobenius(f, 2), f)
    # Hard part, Scott et al. (Pairing 2009) addition chain for BN curves with t > 0.
    fx = _cyclotomic_pow_t(f)
    fx2 = _cyclotomic_pow_t(fx)
    fx3 = _cyclotomic_pow_t(fx2)
    y0 = fp12_mul(fp12_mul(fp12_frobenius(f, 1), fp12_frobenius(f, 2)), fp12_frobenius(f, 3))
    y1 = fp12_conj(f)
    y2 = fp12_frobenius(fx2, 2)
    y3 = fp12_conj(fp12_frobenius(fx, 1))
    y4 = fp12_conj(fp12_mul(fx, fp12_frobenius(fx2, 1)))
    y5 = fp12_conj(fx2)
    y6 = fp12_conj(fp12_mul(fx3, fp12_frobenius(fx3, 1)))
    t0 = fp12_mul(fp12_mul(fp12_cyclotomic_sqr(y6), y4), y5)
    t1 = fp12_mul(fp12_mul(y3, y5), t0)
    t0 = fp12_mul(t0, y2)
    t1 = fp12_cyclotomic_sqr(fp12_mul(fp12_cyclotomic_sqr(t1), t0))
    t0 = fp12_mul(t1, y1)
    t1 = fp12_mul(t1, y0)
    t0 = fp12_cyclotomic_sqr(t0)
    return fp12_mul(t0, t1)


def final_exponentiation_reference(f: Fp12) -> Fp12:
    """The same map by plain exponentiation; slow, kept for tests of the addition chain."""
    from fedledger.sm9.fields import fp12_pow

    return fp12_pow(f, (int(P) ** 12 - 1) // int(N))


def pairing(p_point: G1Point, q: G2Point | G2Lines) -> Fp12:
    """e(P, Q) for P in G1 and Q in G2 (or Q's precomputed lines)."""
    lines = q if isinstance(q, G2Lines) else G2Lines(q)
    return final_exponentiation(miller_loop(p_point, lines))
