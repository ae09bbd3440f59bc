"""Width rates as the ledger stores them: integer parts per million.

One conversion with one rounding, so the node that signs an entry, the chain client that submits
it and the audit that re-encodes it always agree on the integer: the rate's exact value (a float
counts as the binary fraction it is) rounded to the nearest ppm, ties to even.
"""

from __future__ import annotations

from fractions import Fraction

PPM = 1_000_000


def width_to_ppm(width_rate: float | Fraction) -> int:
    """A width rate in (0, 1] as integer parts per million (how the contract stores it)."""
    try:
        exact = width_rate if isinstance(width_rate, Fraction | int) else Fraction(float(width_rate))
        ppm = round(exact * PPM)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"width rate must be a number in (0, 1], got {width_rate!r}") from None
    if not 0 < ppm <= PPM:
        raise ValueError(f"width rate must be in (0, 1], got {width_rate!r}")
    return ppm


def ppm_to_width(ppm: int) -> float:
    """Inverse of :func:`width_to_ppm`."""
    if not 0 < ppm <= PPM:
        raise ValueError(f"width rate in ppm must be in (0, {PPM}], got {ppm}")
    return ppm / PPM
