"""One threshold-signing session for a round record, driven by nodes that poll over HTTP.

Phases: ``commit`` (nodes post nonce commitments) -> ``sign`` (the commitment set is frozen,
nodes post partial signatures) -> ``approve`` (the aggregated SM9 signature is published, nodes
check it and post EIP-712 approvals) -> ``ready`` (k approvals: the aggregator can post). A session
whose partials fail the public check ends ``failed`` naming the cheaters; the driver then starts a
new session without them (nonces are single-use, so a session is never resumed).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from aggregator.config import PARTIAL_TIMEOUT_SECONDS, SIGNING_GRACE_SECONDS
from fedledger.errors import FedLedgerError
from fedledger.protocol import RoundRecord
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.session_auth import payload_signer
from fedledger.sm9 import SM9CheatingSignersError, SM9Error, verify
from fedledger.sm9.threshold import Commitment, Coordinator, PartialSignature, ThresholdPublic


class SessionRejected(FedLedgerError):
    """A request to the session was refused; the message says why (sent back as HTTP 4xx)."""


class SigningSession:
    """State of one session; every method is thread-safe (HTTP handlers and the driver share it)."""

    def __init__(
        self,
        public: ThresholdPublic,
        consortium: Consortium,
        record: RoundRecord,
        included: list[str],  # addresses of the included entries, sorted
        approval_signer: Callable[[bytes, bytes], str],
        excluded: frozenset[int] = frozenset(),
        signing_grace_seconds: float = SIGNING_GRACE_SECONDS,
        partial_timeout_seconds: float = PARTIAL_TIMEOUT_SECONDS,
    ) -> None:
        self.public = public
        self.consortium = consortium
        self.record = record
        self.included = included
        self._approval_signer = approval_signer  # (signature_der, approval) -> approving address
        self.coordinator = Coordinator(public, record.message(), excluded=excluded)
        self.session_id = self.coordinator.session_id
        self.signing_grace_seconds = signing_grace_seconds
        self.partial_timeout_seconds = partial_timeout_seconds
        self.unresponsive: list[int] = []
        self._sign_started: float | None = None
        self.phase = "commit"
        self.cheaters: list[int] = []
        self.signature_der: bytes | None = None
        self.approvals: dict[str, bytes] = {}
        self._frozen: list[Commitment] = []
        self._partials: dict[int, PartialSignature] = {}
        self._committed: set[int] = set()
        self._quorum_since: float | None = None
        self._lock = threading.Lock()
        self._expected = {m.share_index for m in consortium.members if m.share_index not in excluded}

    # ------------------------------------------------------------ what nodes see

    def describe(self) -> dict[str, Any]:
        with self._lock:
            view: dict[str, Any] = {
                "session_id": self.session_id,
                "round": self.record.round,
                "phase": self.phase,
                "record": self.record.to_dict(),
                "included": self.included,
                "excluded": sorted(self.coordinator.excluded),
            }
            if self.phase in ("sign", "approve", "ready"):
                view["commitments"] = [c.to_dict() for c in self._frozen]
            if self.signature_der is not None:
                view["signature_der"] = self.signature_der.hex()
            if self.cheaters:
                view["cheaters"] = self.cheaters
            return view

    # ------------------------------------------------------------ what nodes post

    def _sender(self, payload: dict[str, Any], auth: str, share_index: int) -> str:
        try:
            address = payload_signer(payload, auth)
            member = self.consortium.by_address(address)
        except (ValueError, KeyError) as exc:
            raise SessionRejected(f"unauthenticated request: {exc}") from None
        if member.share_index != share_index:
            raise SessionRejected(f"{address} holds share {member.share_index}, not share {share_index}")
        return address

    def add_commitment(self, payload: dict[str, Any], auth: str) -> None:
        try:
            commitment = Commitment.from_dict(payload)
        except SM9Error as exc:
            raise SessionRejected(str(exc)) from None
        self._sender(payload, auth, commitment.index)
        with self._lock:
            if self.phase != "commit":
                raise SessionRejected(f"session {self.session_id} is past the commit phase ({self.phase})")
            try:
                self.coordinator.add_commitment(commitment)
            except SM9Error as exc:
                raise SessionRejected(str(exc)) from None
            self._committed.add(commitment.index)

    def add_partial(self, payload: dict[str, Any], auth: str) -> None:
        try:
            partial = PartialSignature.from_dict(payload)
        except SM9Error as exc:
            raise SessionRejected(str(exc)) from None
        self._sender(payload, auth, partial.index)
        with self._lock:
            if self.phase != "sign":
                raise SessionRejected(f"session {self.session_id} is not collecting partials ({self.phase})")
            if partial.session_id != self.session_id:
                raise SessionRejected("partial signature for another session")
            if partial.index not in {c.index for c in self._frozen}:
                raise SessionRejected(f"share {partial.index} is not in this session's signing set")
            if partial.index in self._partials:
                raise SessionRejected(f"share {partial.index} already sent its partial signature")
            self._partials[partial.index] = partial

    def add_approval(self, approval_hex: str) -> None:
        with self._lock:
            if self.phase not in ("approve", "ready") or self.signature_der is None:
                raise SessionRejected(f"session {self.session_id} is not collecting approvals ({self.phase})")
            try:
                approval = bytes.fromhex(approval_hex.removeprefix("0x"))
                address = self._approval_signer(self.signature_der, approval)
                self.consortium.by_address(address)
            except (ValueError, KeyError) as exc:
                raise SessionRejected(f"approval rejected: {exc}") from None
            self.approvals[address.lower()] = approval

    # ------------------------------------------------------------ driven by the aggregator

    def tick(self, now: float | None = None) -> str:
        """Advance the phase when enough has arrived; returns the phase."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self.phase == "commit":
                self._tick_commit(now)
            elif self.phase == "sign" and len(self._partials) == len(self._frozen):
                self._aggregate()
            elif self.phase == "sign" and self._sign_started is not None:
                if now - self._sign_started >= self.partial_timeout_seconds:
                    # A signer that committed and went silent (crashed) holds the session up:
                    # end it, so the driver can run a new one without that signer.
                    self.unresponsive = sorted({c.index for c in self._frozen} - set(self._partials))
                    self.phase = "failed"
            elif self.phase == "approve" and len(self.approvals) >= self.public.k:
                signers = {self.consortium.by_share(c.index).address.lower() for c in self._frozen}
                if signers <= set(self.approvals) or self._waited(now):
                    self.phase = "ready"
            return self.phase

    def _waited(self, now: float) -> bool:
        if self._quorum_since is None:
            self._quorum_since = now
        return now - self._quorum_since >= self.signing_grace_seconds

    def _tick_commit(self, now: float) -> None:
        if len(self._committed) < self.public.k:
            return
        if self._committed >= self._expected or self._waited(now):
            self._frozen = self.coordinator.commitments
            self._quorum_since = None
            self._sign_started = now
            self.phase = "sign"

    def _aggregate(self) -> None:
        try:
            signature = self.coordinator.aggregate(list(self._partials.values()))
        except SM9CheatingSignersError as exc:
            self.cheaters = sorted(exc.indices)
            self.phase = "failed"
            return
        if not verify(self.public.master_public_key, self.public.identity, self.record.message(), signature):
            self.cheaters = sorted(self._partials)
            self.phase = "failed"
            return
        self.signature_der = signature.to_der()
        self.phase = "approve"
