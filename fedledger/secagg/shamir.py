"""Shamir t-of-n secret sharing of byte strings over GF(2**521 - 1).

Why: a member that drops out must not spoil the round, so its mask secrets are split among the
others; any t shares rebuild a secret, t - 1 shares say nothing about it (each share of a
random polynomial's value is uniform). A byte string is length-prefixed and cut into 64-byte
chunks, each shared with its own polynomial at the same points; a share is the concatenation
of one 66-byte field element per chunk. Points are the members' ids (1..n, never 0).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from fedledger.secagg.errors import InsufficientShares, SecAggInputError

PRIME = 2**521 - 1
ELEMENT = 66  # bytes per field element
CHUNK = 64  # bytes of secret per field element (< PRIME)


def _chunks(secret: bytes) -> list[int]:
    data = len(secret).to_bytes(4, "big") + secret
    data += bytes(-len(data) % CHUNK)  # pad the last chunk so every chunk is 64 bytes wide
    return [int.from_bytes(data[i : i + CHUNK], "big") for i in range(0, len(data), CHUNK)]


def split(secret: bytes, threshold: int, points: list[int]) -> dict[int, bytes]:
    """Shares of ``secret`` at ``points`` (distinct ids >= 1); any ``threshold`` rebuild it."""
    if not 1 <= threshold <= len(points):
        raise SecAggInputError(f"threshold {threshold} must be in [1, {len(points)}]")
    if len(set(points)) != len(points) or min(points) < 1:
        raise SecAggInputError("share points must be distinct positive ids")
    polys = [[c] + [secrets.randbelow(PRIME) for _ in range(threshold - 1)] for c in _chunks(secret)]
    out = {}
    for x in points:
        values = []
        for coeffs in polys:
            acc = 0
            for c in reversed(coeffs):  # Horner
                acc = (acc * x + c) % PRIME
            values.append(acc.to_bytes(ELEMENT, "big"))
        out[x] = b"".join(values)
    return out


def _elements(share: bytes) -> list[int]:
    if not share or len(share) % ELEMENT:
        raise SecAggInputError(f"share length {len(share)} is not a multiple of {ELEMENT}")
    values = [int.from_bytes(share[i : i + ELEMENT], "big") for i in range(0, len(share), ELEMENT)]
    if any(v >= PRIME for v in values):
        raise SecAggInputError("share element outside the field")
    return values


def interpolate(shares: Mapping[int, bytes], at: int = 0) -> list[int]:
    """The chunk values of the polynomial through ``shares`` evaluated at ``at`` (Lagrange)."""
    xs = list(shares)
    columns = [_elements(shares[x]) for x in xs]
    if len({len(c) for c in columns}) != 1:
        raise SecAggInputError("shares differ in length")
    weights = []
    for i, xi in enumerate(xs):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if i != j:
                num = num * (at - xj) % PRIME
                den = den * (xi - xj) % PRIME
        weights.append(num * pow(den, -1, PRIME) % PRIME)
    return [sum(w * col[k] for w, col in zip(weights, columns, strict=True)) % PRIME for k in range(len(columns[0]))]


def combine(shares: Mapping[int, bytes], threshold: int) -> bytes:
    """The secret from at least ``threshold`` shares (the first ``threshold`` by point are used)."""
    if len(shares) < threshold:
        raise InsufficientShares(f"{len(shares)} shares, {threshold} needed")
    chosen = {x: shares[x] for x in sorted(shares)[:threshold]}
    chunks = interpolate(chosen)
    try:
        data = b"".join(c.to_bytes(CHUNK, "big") for c in chunks)
    except OverflowError as exc:
        raise SecAggInputError("shares do not rebuild a valid secret") from exc
    length = int.from_bytes(data[:4], "big")
    if length > len(data) - 4:
        raise SecAggInputError("shares do not rebuild a valid secret")
    return data[4 : 4 + length]


def consistent(shares: Mapping[int, bytes], threshold: int) -> bool:
    """True when all ``shares`` lie on one polynomial of degree < ``threshold``."""
    points = sorted(shares)
    if len(points) <= threshold:
        return True
    base = {x: shares[x] for x in points[:threshold]}
    return all(interpolate(base, x) == _elements(shares[x]) for x in points[threshold:])
