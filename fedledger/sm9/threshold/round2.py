"""Round 2: each signer's partial signature S_j = [a_j + rho_j b_j]P1 - [h lambda_j]d_j.

A ``Signer`` holds its key share and its round-1 nonces in memory only; the nonces are deleted before
use, so a nonce can never sign twice, even across restarts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fedledger.sm9.curve import G1Point, g1_add, g1_mul, p1_mul
from fedledger.sm9.encoding import g1_from_bytes, g1_to_bytes, hex_field, int_field, json_object, str_field
from fedledger.sm9.errors import SM9ThresholdError
from fedledger.sm9.fields import N
from fedledger.sm9.keys import random_scalar
from fedledger.sm9.threshold.binding import session_values
from fedledger.sm9.threshold.keys import KeyShare, ThresholdPublic, lagrange_at_zero
from fedledger.sm9.threshold.round1 import Commitment, check_session_id


@dataclass(frozen=True)
class PartialSignature:
    """Round 2: signer ``index``'s S_j for ``session_id``."""

    index: int
    session_id: str
    S: G1Point

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "session_id": self.session_id, "S": g1_to_bytes(self.S).hex()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PartialSignature:
        what = "partial signature"
        index = int_field(data, "index", what)
        return cls(
            index,
            str_field(data, "session_id", what),
            g1_from_bytes(hex_field(data, "S", what), f"{what} S (share {index})"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> PartialSignature:
        return cls.from_dict(json_object(text, "partial signature"))


class Signer:
    """One institution's side of the protocol, holding its key share and its one-time nonces."""

    def __init__(self, share: KeyShare, public: ThresholdPublic) -> None:
        if share.identity != public.identity or share.master_public_key != public.master_public_key:
            raise SM9ThresholdError(f"key share {share.index} belongs to another identity or master key")
        if (share.k, share.n) != (public.k, public.n):
            raise SM9ThresholdError(f"key share {share.index} is from a different split (k, n)")
        self.share = share
        self.public = public
        self._nonces: dict[str, tuple[int, int, Commitment]] = {}
        self._used: set[str] = set()

    @property
    def index(self) -> int:
        return self.share.index

    def commit(self, session_id: str) -> Commitment:
        """Round 1: fresh nonces for ``session_id`` (refused if the session was already used here)."""
        check_session_id(session_id)
        if session_id in self._used or session_id in self._nonces:
            raise SM9ThresholdError(f"share {self.index} already committed in session {session_id!r}")
        a, b = random_scalar(), random_scalar()
        commitment = Commitment(self.index, session_id, p1_mul(a), p1_mul(b))
        self._nonces[session_id] = (a, b, commitment)
        return commitment

    def sign(self, session_id: str, message: bytes, commitments: Sequence[Commitment]) -> PartialSignature:
        """Round 2: the partial signature. The nonces are deleted first, so they can never sign twice."""
        entry = self._nonces.pop(session_id, None)
        if entry is None:
            if session_id in self._used:
                raise SM9ThresholdError(f"share {self.index} already signed in session {session_id!r}")
            raise SM9ThresholdError(f"share {self.index} has no commitment in session {session_id!r}")
        self._used.add(session_id)
        a, b, mine = entry
        if not isinstance(message, bytes | bytearray):
            raise SM9ThresholdError("message must be bytes")
        theirs = [c for c in commitments if c.index == self.index]
        if theirs != [mine]:
            raise SM9ThresholdError(f"the commitment list does not carry share {self.index}'s own commitment")
        values = session_values(self.public, session_id, bytes(message), commitments)
        lam = lagrange_at_zero(self.index, values.indices)
        nonce = (a + values.rho[self.index] * b) % N
        s_j = g1_add(p1_mul(nonce), g1_mul(self.share.point, (-values.h * lam) % N))
        if s_j is None:
            raise SM9ThresholdError("partial signature is the point at infinity; start a new session")
        return PartialSignature(self.index, session_id, s_j)

    def __repr__(self) -> str:
        return f"Signer(index={self.index}, pending_sessions={len(self._nonces)})"
