"""SM9 identity-based signatures (GM/T 0044-2016, GB/T 38635) and k-of-n threshold SM9.

Pure Python on gmpy2 integers. The threshold scheme (``split_key``, ``Signer``, ``Coordinator``)
produces ordinary SM9 signatures that ``verify`` accepts.
"""

from __future__ import annotations

from fedledger.sm9.errors import (
    SM9CheatingSignersError,
    SM9EncodingError,
    SM9Error,
    SM9KeyError,
    SM9ThresholdError,
)
from fedledger.sm9.keys import SignMasterKey, SignMasterPublicKey, SignPrivateKey, extract_sign_key
from fedledger.sm9.signature import Signature, sign, verify
from fedledger.sm9.threshold import (
    Commitment,
    Coordinator,
    KeyShare,
    PartialSignature,
    Signer,
    ThresholdPublic,
    aggregate,
    new_session_id,
    split_key,
    threshold_sign_local,
)

__all__ = [
    "Commitment",
    "Coordinator",
    "KeyShare",
    "PartialSignature",
    "SM9CheatingSignersError",
    "SM9EncodingError",
    "SM9Error",
    "SM9KeyError",
    "SM9ThresholdError",
    "SignMasterKey",
    "SignMasterPublicKey",
    "SignPrivateKey",
    "Signature",
    "Signer",
    "ThresholdPublic",
    "aggregate",
    "extract_sign_key",
    "new_session_id",
    "sign",
    "split_key",
    "threshold_sign_local",
    "verify",
]
