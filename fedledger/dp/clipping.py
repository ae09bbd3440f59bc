"""Per-member L2 clipping of an update (the change from the global model), the DP sensitivity bound."""

from __future__ import annotations

import math

import numpy as np

from fedledger.dp.errors import DPParameterError

_MARGIN = 1.0 - 2.0**-20  # float32 rounding after scaling must not push the norm past the bound


def l2_clip(update: np.ndarray, clip: float) -> np.ndarray:
    """``update`` scaled down (float32) so its L2 norm is at most ``clip``; unchanged if already within."""
    if not (math.isfinite(clip) and clip > 0):
        raise DPParameterError(f"clip must be a positive number, got {clip!r}")
    values = np.asarray(update, dtype=np.float64)
    if values.size and not np.isfinite(values).all():
        raise DPParameterError("update holds NaN or Inf")
    # fsum is correctly rounded whatever the CPU or BLAS: co-signers must clip to the same bits
    norm = math.sqrt(math.fsum(np.square(values).tolist()))
    if norm <= clip * _MARGIN:
        return np.asarray(update, dtype=np.float32).copy()
    return (values * (clip * _MARGIN / norm)).astype(np.float32)
