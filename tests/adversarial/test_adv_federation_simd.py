"""Finding 4 of issue #10: honest nodes on CPUs with other SIMD kernels must agree bit for bit.

The same alignment runs in fresh interpreters, each pinned to one of PyTorch's CPU kernels with
``ATEN_CPU_CAPABILITY`` and the compiled exact-sum kernels to the matching CPU (numba's
NUMBA_CPU_NAME), once on them and once on numpy's loops alone; a node whose digest differs from
the aggregator's refuses to sign.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fl.test_fl_determinism import NUMBA_CPUS

PROBE = Path(__file__).with_name("simd_probe.py")
CAPABILITIES = ("default", "avx2")


def _digest_under(capability: str, sums_on: str) -> str:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability, **NUMBA_CPUS[capability]}
    done = subprocess.run(
        [sys.executable, str(PROBE), sums_on], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.strip()


def test_alignment_is_bit_identical_under_every_simd_kernel() -> None:
    digests = {(cap, sums_on): _digest_under(cap, sums_on) for cap in CAPABILITIES for sums_on in ("kernel", "numpy")}
    assert all(len(d) == 64 for d in digests.values()), digests
    assert len(set(digests.values())) == 1, digests
