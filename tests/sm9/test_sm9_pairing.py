"""Field and pairing laws, checked against definitions (not against this code's own outputs)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fedledger.sm9.curve import (
    P1,
    P2,
    g1_add,
    g1_is_on_curve,
    g1_mul,
    g2_add,
    g2_in_subgroup,
    g2_mul,
    p1_mul,
    p2_mul,
)
from fedledger.sm9.fields import (
    FP12_ONE,
    N,
    P,
    fp12_cyclotomic_sqr,
    fp12_frobenius,
    fp12_inv,
    fp12_is_one,
    fp12_mul,
    fp12_pow,
    fp12_sqr,
)
from fedledger.sm9.gt import GTFixedBase, gt_multi_pow, gt_pow
from fedledger.sm9.pairing import (
    G2Lines,
    final_exponentiation,
    final_exponentiation_reference,
    miller_loop,
    pairing,
)

scalars = st.integers(min_value=1, max_value=int(N) - 1)
_E = pairing(P1, P2)


def _rand12(seed: int) -> tuple:
    rng = random.Random(seed)
    return tuple(rng.randrange(int(P)) for _ in range(12))


def _schoolbook_mul(a: tuple, b: tuple) -> tuple:
    """Product in Fp[w]/(w^12 + 2) straight from the definition."""
    c = [0] * 23
    for i in range(12):
        for j in range(12):
            c[i + j] += int(a[i]) * int(b[j])
    return tuple((c[k] - 2 * (c[k + 12] if k + 12 < 23 else 0)) % int(P) for k in range(12))


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=0, max_value=2**32))
def test_fp12_mul_sqr_inv_match_the_definition(seed: int) -> None:
    a, b = _rand12(seed), _rand12(seed + 1)
    assert fp12_mul(a, b) == _schoolbook_mul(a, b)
    assert fp12_sqr(a) == _schoolbook_mul(a, a)
    assert fp12_is_one(fp12_mul(a, fp12_inv(a)))


def test_frobenius_is_the_p_power() -> None:
    a = _rand12(7)
    assert fp12_frobenius(a, 1) == fp12_pow(a, int(P))
    assert fp12_frobenius(a, 2) == fp12_pow(fp12_pow(a, int(P)), int(P))


def test_final_exponentiation_chain_equals_plain_power() -> None:
    f = miller_loop(p1_mul(12345), G2Lines(p2_mul(678)))
    assert final_exponentiation(f) == final_exponentiation_reference(f)


def test_generators_have_order_n() -> None:
    assert g1_is_on_curve(P1)
    assert g1_mul(P1, int(N) - 1) == (P1[0], (-P1[1]) % P)  # [N-1]P1 = -P1, so [N]P1 = O
    assert g2_in_subgroup(P2)


@settings(max_examples=4, deadline=None)
@given(scalars, scalars)
def test_pairing_is_bilinear(a: int, b: int) -> None:
    assert pairing(p1_mul(a), p2_mul(b)) == gt_pow(_E, a * b % int(N))
    assert pairing(g1_mul(P1, a), P2) == pairing(P1, g2_mul(P2, a))


def test_pairing_is_non_degenerate_and_lands_in_gt() -> None:
    assert _E != FP12_ONE
    assert fp12_is_one(fp12_pow(_E, int(N)))


@settings(max_examples=10, deadline=None)
@given(scalars, scalars)
def test_group_laws_and_gt_exponentiation(a: int, b: int) -> None:
    assert g1_add(p1_mul(a), p1_mul(b)) == p1_mul(a + b)
    assert g1_mul(P1, a) == p1_mul(a)
    assert g2_add(p2_mul(a), p2_mul(b)) == p2_mul(a + b)
    assert g2_mul(P2, b) == p2_mul(b)
    assert gt_multi_pow([(_E, a), (_E, b)]) == fp12_pow(_E, (a + b) % int(N))


def test_gt_fixed_base_table() -> None:
    table = GTFixedBase(_E)
    for e in (1, 15, 16, 2**200 + 12345, int(N) - 1):
        assert table.pow(e) == fp12_pow(_E, e)


@settings(max_examples=5, deadline=None)
@given(scalars)
def test_cyclotomic_squaring_matches_generic_squaring_in_gt(a: int) -> None:
    y = fp12_pow(_E, a)
    assert fp12_cyclotomic_sqr(y) == fp12_sqr(y)
