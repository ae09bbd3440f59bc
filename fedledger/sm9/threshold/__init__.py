"""k-of-n threshold SM9 whose output is an ordinary SM9 signature (see DESIGN.md, "Threshold SM9").

Split as the ZF FROST crate separates it: ``keys`` (the dealer's point shares and public data),
``round1`` (nonce commitments), ``binding`` (the values both rounds derive), ``round2`` (partial
signatures) and ``aggregation`` (combine, name cheaters, run a session). Callers import from here.
"""

from __future__ import annotations

from fedledger.sm9.threshold.aggregation import Coordinator, aggregate, threshold_sign_local
from fedledger.sm9.threshold.keys import KIND_SHARE, MAX_SHARES, KeyShare, ThresholdPublic, lagrange_at_zero, split_key
from fedledger.sm9.threshold.round1 import Commitment, new_session_id
from fedledger.sm9.threshold.round2 import PartialSignature, Signer

__all__ = [
    "KIND_SHARE",
    "MAX_SHARES",
    "Commitment",
    "Coordinator",
    "KeyShare",
    "PartialSignature",
    "Signer",
    "ThresholdPublic",
    "aggregate",
    "lagrange_at_zero",
    "new_session_id",
    "split_key",
    "threshold_sign_local",
]
