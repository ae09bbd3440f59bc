"""Timing of the SM9 operations for ``fedledger bench sm9``.

Each figure is the median of ``repeat`` runs in milliseconds. "warm" figures reuse what a long-lived
node caches per master key (g and its fixed-base table) and per identity (Q and its Miller-loop
lines); "cold" figures pay for those too. GmSSL 3.3 figures (portable C, one core, measured on this
machine by the issue's author) are the reference the issue's speed goals are stated against; GmSSL
cannot be run here, so they are quoted, and same-run ratios (threshold vs plain sign) are added.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from fedledger.sm9.curve import g1_mul, p1_mul, p2_mul
from fedledger.sm9.keys import SignMasterKey, SignMasterPublicKey, extract_sign_key, random_scalar
from fedledger.sm9.pairing import pairing
from fedledger.sm9.signature import sign, verify
from fedledger.sm9.threshold import split_key, threshold_sign_local

# Upper and lower ends of the ranges quoted in issue 5 (ms).
GMSSL_REFERENCE_MS = {
    "pairing": (10.3, 11.1),
    "sign": (16.0, 19.0),
    "verify": (25.0, 33.0),
    "g1_mul": (0.55, 0.55),
}


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return round(statistics.median(times), 3)


def run(repeat: int = 15, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure and return the figures (a JSON-serialisable dict)."""

    def step(name: str) -> None:
        if progress is not None:
            progress(name)

    master = SignMasterKey.generate()
    mpk = master.public_key
    key = extract_sign_key(master, "inst:bench")
    message = b"fedledger sm9 benchmark message" * 4
    signature = sign(key, message)  # warms g and its table
    verify(mpk, "inst:bench", message, signature)  # warms Q and its lines
    counter = iter(range(10**9))

    step("pairing")
    points = iter([(p1_mul(random_scalar()), p2_mul(random_scalar())) for _ in range(repeat)])
    pairing_ms = _median_ms(lambda: pairing(*next(points)), repeat)  # fresh Q: its lines are included
    step("G1 multiply")
    g1_ms = _median_ms(lambda: g1_mul(key.point, random_scalar()), repeat)
    step("sign")
    sign_ms = _median_ms(lambda: sign(key, message), repeat)
    sign_cold_ms = _median_ms(
        lambda: sign(type(key)(key.identity, key.point, SignMasterPublicKey(mpk.point)), message),
        max(3, repeat // 5),
    )
    step("verify")
    verify_ms = _median_ms(lambda: verify(mpk, "inst:bench", message, signature.to_der()), repeat)
    others = {}
    for _ in range(repeat):
        ident = f"inst:bench-{next(counter)}"
        others[ident] = sign(extract_sign_key(master, ident), message)
    pending = iter(others.items())

    def verify_new_identity() -> None:
        ident, sig = next(pending)
        if not verify(mpk, ident, message, sig.to_der()):
            raise AssertionError("benchmark signature did not verify")

    verify_new_id_ms = _median_ms(verify_new_identity, repeat)
    step("threshold sign 3 of 5")
    shares, public = split_key(master, "consortium:bench", 3, 5)
    threshold_sign_local(shares[:3], public, message)  # warms the consortium identity
    threshold_ms = _median_ms(lambda: threshold_sign_local(shares[1:4], public, message), repeat)
    result: dict[str, Any] = {
        "unit": "ms (median)",
        "repeat": repeat,
        "cpu_count": os.cpu_count(),
        "pairing_ms": pairing_ms,
        "g1_mul_ms": g1_ms,
        "sign_ms": sign_ms,
        "sign_cold_master_key_ms": sign_cold_ms,
        "verify_ms": verify_ms,
        "verify_new_identity_ms": verify_new_id_ms,
        "threshold_sign_k3_n5_ms": threshold_ms,
        "gmssl_3_3_reference_ms": {k: list(v) for k, v in GMSSL_REFERENCE_MS.items()},
    }
    mid = {k: (lo + hi) / 2 for k, (lo, hi) in GMSSL_REFERENCE_MS.items()}
    result["ratio_to_gmssl_midpoint"] = {
        "pairing": round(result["pairing_ms"] / mid["pairing"], 2),
        "g1_mul": round(g1_ms / mid["g1_mul"], 2),
        "sign": round(sign_ms / mid["sign"], 2),
        "verify": round(verify_ms / mid["verify"], 2),
        "verify_new_identity": round(verify_new_id_ms / mid["verify"], 2),
        "threshold_sign_vs_gmssl_sign": round(threshold_ms / mid["sign"], 2),
    }
    result["same_run_ratios"] = {
        "threshold_sign_over_plain_sign": round(threshold_ms / sign_ms, 2),
        "verify_over_pairing": round(verify_ms / result["pairing_ms"], 2),
    }
    return result


__all__ = ["GMSSL_REFERENCE_MS", "run"]
