"""k-of-n threshold SM9 whose output is an ordinary SM9 signature (see DESIGN.md, "Threshold SM9").

Dealer: d_c = [t2]P1 is split into point shares d_j = [f(j)]P1, with public Y_j = e(d_j, Q).
Signing (two rounds, FROST-style binding, RFC 9591):
  1. each signer j commits D_j = [a_j]P1, E_j = [b_j]P1 for a session id;
  2. from all commitments, rho_j, R = sum (D_j + [rho_j]E_j) and h = H2(M || e(R, Q)); each signer
     sends S_j = [a_j + rho_j b_j]P1 - [h lambda_j]d_j.
The coordinator checks the partials, names cheaters, and S = sum S_j gives the SM9 signature (h, S).

Split as the ZF FROST crate separates it: ``keys`` (the dealer), ``round1`` (nonce commitments),
``binding`` (the values both rounds derive), ``round2`` (partial signatures) and ``aggregation``
(combine, name cheaters, run a session). Callers import the public names from here.
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
