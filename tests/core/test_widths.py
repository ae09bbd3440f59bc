"""One width-to-ppm conversion: exact value, nearest ppm, ties to even, for floats and fractions alike."""

from __future__ import annotations

from fractions import Fraction

import pytest

from fedledger.widths import PPM, ppm_to_width, width_to_ppm


@pytest.mark.parametrize(
    ("rate", "ppm"),
    [
        (1.0, 1_000_000),
        (1, 1_000_000),
        (Fraction(1, 1), 1_000_000),
        (1 / 8, 125_000),
        (Fraction(1, 8), 125_000),
        (1 / 3, 333_333),
        (Fraction(1, 3), 333_333),
        (2 / 3, 666_667),
        (Fraction(2, 3), 666_667),
        (Fraction(1, 2_000_000), None),  # exactly half a ppm rounds to even: 0, out of range
        (Fraction(3, 2_000_000), 2),  # 1.5 ppm rounds to even: 2
        (Fraction(5, 2_000_000), 2),  # 2.5 ppm rounds to even: 2
    ],
)
def test_edge_rates(rate, ppm):
    if ppm is None:
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            width_to_ppm(rate)
    else:
        assert width_to_ppm(rate) == ppm


def test_float_uses_its_exact_value_not_a_rounded_product():
    # 0.7885475 * 1e6 rounds up to 788547.5000000001 in floating point; the float itself is below .5
    assert Fraction(0.7885475) * PPM < Fraction(7_885_475, 10)
    assert width_to_ppm(0.7885475) == 788_547


@pytest.mark.parametrize("bad", [0, 0.0, -0.5, 1.5, 1.0000006, float("nan"), float("inf"), None, "half"])
def test_bad_rates_give_one_clear_error(bad):
    with pytest.raises(ValueError, match=r"width rate must be"):
        width_to_ppm(bad)


def test_round_trip_and_bounds():
    for ppm in (1, 125_000, 333_333, PPM):
        assert width_to_ppm(ppm_to_width(ppm)) == ppm
    for bad in (0, -1, PPM + 1):
        with pytest.raises(ValueError):
            ppm_to_width(bad)
