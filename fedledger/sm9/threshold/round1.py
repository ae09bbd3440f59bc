"""Round 1: each signer commits two nonce points D_j = [a_j]P1, E_j = [b_j]P1 for one session id."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from fedledger.sm9.curve import G1Point
from fedledger.sm9.encoding import g1_from_bytes, g1_to_bytes, hex_field, int_field, json_object, str_field
from fedledger.sm9.errors import SM9ThresholdError

_MAX_SESSION_ID = 256


def check_session_id(session_id: str) -> bytes:
    """The session id's bytes; a bounded, non-empty id keeps the binding transcript well formed."""
    if not isinstance(session_id, str) or not 0 < len(session_id) <= _MAX_SESSION_ID:
        raise SM9ThresholdError(
            f"session id must be a non-empty string of at most {_MAX_SESSION_ID} characters"
        )
    return session_id.encode("utf-8")


def new_session_id() -> str:
    """A fresh random id: nonces are tied to their session, so every session needs its own."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Commitment:
    """Round 1: signer ``index`` commits D = [a]P1, E = [b]P1 for ``session_id``."""

    index: int
    session_id: str
    D: G1Point
    E: G1Point

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "session_id": self.session_id,
            "D": g1_to_bytes(self.D).hex(),
            "E": g1_to_bytes(self.E).hex(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Commitment:
        what = "threshold commitment"
        index = int_field(data, "index", what)
        session_id = str_field(data, "session_id", what)
        d_point = g1_from_bytes(hex_field(data, "D", what), f"{what} D (share {index})")
        e_point = g1_from_bytes(hex_field(data, "E", what), f"{what} E (share {index})")
        return cls(index, session_id, d_point, e_point)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Commitment:
        return cls.from_dict(json_object(text, "threshold commitment"))
