"""Authenticating what nodes send to the aggregator's signing session.

Each body (commitment, partial) is signed with the institution's Ethereum key as an EIP-191
message over its canonical JSON, so the aggregator knows which member sent it and nobody can
post under another member's share index.
"""

from __future__ import annotations

import json
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct

_TAG = "fedledger/signing-session/v1:"


def _canonical(payload: dict[str, Any]) -> bytes:
    return (_TAG + json.dumps(payload, sort_keys=True, separators=(",", ":"))).encode("utf-8")


def sign_payload(private_key: bytes, payload: dict[str, Any]) -> str:
    """Hex EIP-191 signature of ``payload`` by ``private_key``."""
    signed = Account.sign_message(encode_defunct(_canonical(payload)), private_key=private_key)
    return "0x" + bytes(signed.signature).hex()


def payload_signer(payload: dict[str, Any], signature: str) -> str:
    """The address that signed ``payload``; raises ValueError for a malformed signature."""
    try:
        return str(Account.recover_message(encode_defunct(_canonical(payload)), signature=signature))
    except Exception as exc:  # eth-account raises several types for malformed signatures
        raise ValueError(f"malformed payload signature: {exc}") from None
