"""The aggregator's view of one member's upload looks uniformly random and uncorrelated with it.

Each statistic is first shown to reject the unmasked encoding of the same update, so the test
can fail; then it must accept the masked upload.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from fedledger.secagg.messages import RoundSetup
from fedledger.secagg.ring import RingSpec, encode
from fedledger.secagg.simulation import run_round

LENGTH = 1 << 16
ALPHA = 1e-4


def _uniformity_p(values: np.ndarray) -> float:
    """Chi-square p-value of the top byte of each 32-bit ring value over 256 bins."""
    counts = np.bincount((values >> 24).astype(np.int64), minlength=256)
    return float(stats.chisquare(counts).pvalue)


def _low_bit_p(values: np.ndarray) -> float:
    counts = np.bincount((values & 0xFF).astype(np.int64), minlength=256)
    return float(stats.chisquare(counts).pvalue)


def _correlation_p(values: np.ndarray, plain: np.ndarray) -> float:
    return float(stats.pearsonr(values.astype(np.float64), plain.astype(np.float64)).pvalue)


def test_masked_upload_is_uniform_and_uncorrelated_with_the_update():
    ring = RingSpec(32, 16)
    positions = {1: np.arange(LENGTH), 2: np.arange(LENGTH // 2), 3: np.arange(0, LENGTH, 4)}
    setup = RoundSetup(0, 2, ring, LENGTH, {1: 5, 2: 9, 3: 2}, positions)
    ramp = np.linspace(-1, 1, LENGTH, dtype=np.float32)  # a strongly structured update
    values = {1: ramp, 2: ramp[: LENGTH // 2].copy(), 3: ramp[::4].copy()}
    plain = encode(values[1], 5, ring, 1.0)
    # the statistics see the structure when nothing masks it
    assert _uniformity_p(plain) < ALPHA
    assert _correlation_p(plain.view(np.int32), ramp) < ALPHA
    published, _, _ = run_round(setup, values, 1.0)
    masked = published.masked[1].values
    assert _uniformity_p(masked) > ALPHA
    assert _low_bit_p(masked) > ALPHA
    assert _correlation_p(masked, ramp) > ALPHA
    assert _correlation_p(masked.view(np.int32), ramp) > ALPHA


def test_no_unmasking_code_path_opens_sealed_shares_or_touches_a_members_secrets():
    # the aggregator and nodes unmask with fedledger.secagg.aggregate alone: it must only ever see
    # published messages, never a member object, its sealed shares' plaintext or its seed
    import ast
    import inspect

    import fedledger.secagg.aggregate as unmasking

    tree = ast.parse(inspect.getsource(unmasking))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    assert not {"open_sealed", "Member", "sealed_shares", "_seed", "_received", "_pair_secrets"} & (names | imported)
