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
from typing import Any, Protocol

from aggregator.config import PARTIAL_TIMEOUT_SECONDS, SIGNING_GRACE_SECONDS
from fedledger.errors import FedLedgerError
from fedledger.protocol import RoundRecord
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.session_auth import payload_signer
from fedledger.sm9 import SM9CheatingSignersError, SM9Error, verify
from fedledger.sm9.threshold import Commitment, Coordinator, PartialSignature, ThresholdPublic


class SessionRejected(FedLedgerError):
    """A request to the session was refused; the message says why (sent back as HTTP 4xx)."""

    status_code = 409  # the request conflicts with the session's state


class Unauthenticated(SessionRejected):
    """The sender is not an active member, or the payload's signature is not its own."""

    status_code = 403


class MalformedPayload(SessionRejected):
    """The payload cannot be decoded, or it is bound to another session or share."""

    status_code = 422


class ApprovalGate(Protocol):
    """Who may take part and what an approval must be, as the chain says now (see approval_check)."""

    def signer_of(self, signature_der: bytes, approval: bytes) -> str:
        """The active institution that made ``approval``; raises FedLedgerError otherwise."""
        ...

    def is_active(self, address: str) -> bool: ...

    def required(self) -> int:
        """How many approvals the post needs."""
        ...


class SigningSession:
    """State of one session; every method is thread-safe (HTTP handlers and the driver share it)."""

    def __init__(
        self,
        public: ThresholdPublic,
        consortium: Consortium,
        record: RoundRecord,
        included: list[str],  # addresses of the included entries, sorted
        gate: ApprovalGate,
        excluded: frozenset[int] = frozenset(),
        signing_grace_seconds: float = SIGNING_GRACE_SECONDS,
        partial_timeout_seconds: float = PARTIAL_TIMEOUT_SECONDS,
    ) -> None:
        self.public = public
        self.consortium = consortium
        self.record = record
        self.included = included
        self.gate = gate
        self.coordinator = Coordinator(public, record.message(), excluded=excluded)
        self.session_id = self.coordinator.session_id
        self.signing_grace_seconds = signing_grace_seconds
        self.partial_timeout_seconds = partial_timeout_seconds
        self.unresponsive: list[int] = []
        self._sign_started: float | None = None
        self.phase = "commit"
        self.cheaters: list[int] = []
        self.signature_der: bytes | None = None
        self.approvals: dict[str, bytes] = {}  # approving address (lower case) -> approval, in arrival order
        self._frozen: list[Commitment] = []
        self._partials: dict[int, PartialSignature] = {}
        self._committed: dict[int, Commitment] = {}
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

    def _authenticated(self, payload: dict[str, Any], auth: str) -> int:
        """The sender's share index, checked before any SM9 object is built from the payload.

        The sender must sign the payload with its Ethereum key, be an active institution on chain
        now, and the payload must carry this session's id and the sender's own share index, so a
        payload replayed from another session, round or member is refused cheaply.
        """
        try:
            address = payload_signer(payload, auth)
            member = self.consortium.by_address(address)
        except (ValueError, KeyError) as exc:
            raise Unauthenticated(f"unauthenticated request: {exc}") from None
        if not self.gate.is_active(address):
            raise Unauthenticated(f"{address} is not an active institution on the ledger")
        if payload.get("session_id") != self.session_id:
            raise MalformedPayload(f"payload is for another session, not {self.session_id}")
        if payload.get("index") != member.share_index:
            raise MalformedPayload(f"{address} holds share {member.share_index}, not share {payload.get('index')!r}")
        return member.share_index

    def add_commitment(self, payload: dict[str, Any], auth: str) -> None:
        index = self._authenticated(payload, auth)
        try:
            commitment = Commitment.from_dict(payload)
        except SM9Error as exc:
            raise MalformedPayload(str(exc)) from None
        with self._lock:
            if self._committed.get(index) == commitment:
                return  # a resend after a lost response: already counted
            if self.phase != "commit":
                raise SessionRejected(f"session {self.session_id} is past the commit phase ({self.phase})")
            try:
                self.coordinator.add_commitment(commitment)
            except SM9Error as exc:
                raise SessionRejected(str(exc)) from None
            self._committed[index] = commitment

    def add_partial(self, payload: dict[str, Any], auth: str) -> None:
        index = self._authenticated(payload, auth)
        try:
            partial = PartialSignature.from_dict(payload)
        except SM9Error as exc:
            raise MalformedPayload(str(exc)) from None
        with self._lock:
            if self._partials.get(index) == partial:
                return  # a resend after a lost response: already counted
            if self.phase != "sign":
                raise SessionRejected(f"session {self.session_id} is not collecting partials ({self.phase})")
            if index not in {c.index for c in self._frozen}:
                raise SessionRejected(f"share {index} is not in this session's signing set")
            if index in self._partials:
                raise SessionRejected(f"share {index} already sent its partial signature")
            self._partials[index] = partial

    def add_approval(self, approval_hex: str) -> None:
        """Take an approval only if the contract would count it (see ``ApprovalGate``); else refuse it."""
        try:
            approval = bytes.fromhex(approval_hex.removeprefix("0x"))
        except ValueError:
            raise MalformedPayload("approval is not hex") from None
        signature_der = self.signature_der  # set once, when the session enters ``approve``
        if signature_der is None:
            raise SessionRejected(f"session {self.session_id} is not collecting approvals ({self.phase})")
        try:  # reads the chain: outside the lock, so other requests and the driver do not wait on it
            address = self.gate.signer_of(signature_der, approval).lower()
        except FedLedgerError as exc:
            raise MalformedPayload(f"approval rejected: {exc}") from None
        with self._lock:
            if self.phase not in ("approve", "ready"):
                raise SessionRejected(f"session {self.session_id} is not collecting approvals ({self.phase})")
            if address in self.approvals:
                if self.approvals[address] == approval:
                    return  # a resend after a lost response
                raise SessionRejected(f"{address} already approved this session")
            self.approvals[address] = approval

    def approval_list(self) -> list[tuple[str, bytes]]:
        """(approver, approval) in arrival order, as the post will send them."""
        with self._lock:
            return list(self.approvals.items())

    def drop_approval(self, address: str | None) -> None:
        """Forget an approval the contract refused (found by simulating the post); wait for another."""
        with self._lock:
            if address is not None:
                self.approvals.pop(address.lower(), None)
            if self.phase == "ready":
                self.phase = "approve"
                self._quorum_since = None

    # ------------------------------------------------------------ driven by the aggregator

    def tick(self, now: float | None = None) -> str:
        """Advance the phase when enough has arrived; returns the phase."""
        now = time.monotonic() if now is None else now
        required = self.gate.required() if self.phase == "approve" else 0  # a chain read: not under the lock
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
            elif self.phase == "approve" and required and len(self.approvals) >= required:
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
        if set(self._committed) >= self._expected or self._waited(now):
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
