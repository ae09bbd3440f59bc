"""The secure round's message board: what members post to the aggregator's API in each phase.

Members stay outbound-only: each puts its message in the content store and posts its CID and SM3
digest, signed with its Ethereum key (and bound to its client certificate under mutual TLS). The
board fetches the message, checks it (a join's SM9 signature, the phase, the member's id) and keeps
it; nodes read the phase and every accepted message's reference from ``GET /rounds/{r}/secagg``.
The board holds only public messages: nothing here can open a member's update.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from fedledger.protocol.consortium import Consortium
from fedledger.protocol.secagg_round import Join, Ref, SecureRoundError
from fedledger.protocol.session_auth import payload_signer
from fedledger.secagg.errors import SecAggError
from fedledger.secagg.messages import Reveal, RoundSetup, ShareKeys
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import ContentStore

PHASES = ("join", "share", "masked", "reveal", "done", "failed")
MAX_AUTH_CHARS = 200


class SecurePost(BaseModel):
    payload: dict[str, Any] = Field(description="{round, member, cid, digest}: a message the member put in the store")
    auth: str = Field(max_length=MAX_AUTH_CHARS, description="EIP-191 signature of the payload by the member's key")


class SecureRound:
    """The phase and accepted messages of one round; thread-safe (HTTP handlers and the driver)."""

    def __init__(self, round_index: int) -> None:
        self.round_index = round_index
        self.phase = "join"
        self.problem = ""
        self.joins: dict[int, tuple[Ref, Join]] = {}
        self.setup: tuple[Ref, RoundSetup] | None = None
        self.shares: dict[int, tuple[Ref, ShareKeys]] = {}
        self.survivors: list[int] = []
        self.reveals: dict[int, tuple[Ref, Reveal]] = {}
        self.lock = threading.Lock()

    def view(self) -> dict[str, Any]:
        with self.lock:
            view: dict[str, Any] = {
                "round": self.round_index,
                "phase": self.phase,
                "joins": {str(m): r.to_dict() for m, (r, _) in sorted(self.joins.items())},
            }
            if self.setup is not None:
                view["setup"] = self.setup[0].to_dict()
            if self.phase in ("masked", "reveal", "done"):
                view["shares"] = {str(m): r.to_dict() for m, (r, _) in sorted(self.shares.items())}
            if self.phase in ("reveal", "done"):
                view["survivors"] = list(self.survivors)
            if self.problem:
                view["problem"] = self.problem
            return view


class SecureBoard:
    """Secure rounds by index, with what is needed to check a posted message."""

    def __init__(
        self, store: ContentStore, mpk: SignMasterPublicKey, roster: Consortium, is_active: Callable[[str], bool]
    ) -> None:
        self.store = store
        self.mpk = mpk
        self.roster = roster
        self.is_active = is_active
        self._rounds: dict[int, SecureRound] = {}
        self._lock = threading.Lock()

    def round(self, round_index: int) -> SecureRound:
        """The round's board, created on first use."""
        with self._lock:
            return self._rounds.setdefault(round_index, SecureRound(round_index))

    def find(self, round_index: int) -> SecureRound:
        with self._lock:
            found = self._rounds.get(round_index)
        if found is None:
            raise HTTPException(404, f"no secure round {round_index} yet")
        return found

    def accept(self, round_index: int, phase: str, payload: dict[str, Any], auth: str) -> None:
        """Check and keep one posted message; HTTPException (403/409/422) says why it was refused."""
        try:
            address = payload_signer(payload, auth)
            member = self.roster.by_address(address)
        except (ValueError, KeyError) as exc:
            raise HTTPException(403, f"unauthenticated request: {exc}") from None
        if not self.is_active(address):
            raise HTTPException(403, f"{address} is not an active institution on the ledger")
        if payload.get("round") != round_index or payload.get("member") != member.share_index:
            raise HTTPException(422, f"payload must name round {round_index} and member {member.share_index}")
        try:
            ref = Ref.from_dict({"cid": payload.get("cid"), "digest": payload.get("digest")})
            data = ref.read(self.store)
        except SecureRoundError as exc:
            raise HTTPException(422, str(exc)) from None
        sr = self.find(round_index)
        try:
            self._keep(sr, phase, member.share_index, ref, data)
        except (SecureRoundError, SecAggError) as exc:
            raise HTTPException(422, str(exc)) from None

    def _keep(self, sr: SecureRound, phase: str, member: int, ref: Ref, data: bytes) -> None:
        if phase == "join":
            join = Join.from_bytes(data)
            join.check(self.mpk, self.roster, sr.round_index)
            if join.member != member:
                raise SecureRoundError("a join must carry the sender's own member id")
            message: Any = join
        elif phase == "share":
            message = ShareKeys.from_bytes(data)
        elif phase == "reveal":
            message = Reveal.from_bytes(data)
        else:
            raise HTTPException(404, f"no secure-round phase {phase!r}")
        if getattr(message, "member", member) != member or getattr(message, "round_index", -1) != sr.round_index:
            raise SecureRoundError(f"the {phase} message names another member or round")
        tables: dict[str, dict[int, tuple[Ref, Any]]] = {"join": sr.joins, "share": sr.shares, "reveal": sr.reveals}
        table = tables[phase]
        with sr.lock:
            if table.get(member, (None,))[0] == ref:
                return  # a resend after a lost response
            if sr.phase != phase:
                raise HTTPException(409, f"secure round {sr.round_index} is in phase {sr.phase}, not {phase}")
            if member in table:
                raise HTTPException(409, f"member {member} already sent its {phase} message")
            if phase == "share" and (sr.setup is None or member not in sr.setup[1].weights):
                raise HTTPException(409, f"member {member} is not in this round's setup")
            if phase == "reveal" and member not in sr.survivors:
                raise HTTPException(409, f"member {member} is not a survivor of this round")
            table[member] = (ref, message)


def add_secure_routes(
    app: FastAPI, board: Any, bound: Callable[[Request, Any], None], arrived: Callable[[], None]
) -> None:
    """The secure round's routes on the aggregator's app (``board.secure`` None: 404, not a secure consortium)."""

    def secure() -> SecureBoard:
        if board.secure is None:
            raise HTTPException(404, "this aggregator runs no secure aggregation")
        secure_board: SecureBoard = board.secure
        return secure_board

    @app.get("/rounds/{round_index}/secagg")
    def secure_view(round_index: int) -> dict[str, Any]:
        return secure().find(round_index).view()

    @app.post("/rounds/{round_index}/secagg/{phase}")
    def secure_post(round_index: int, phase: str, body: SecurePost, request: Request) -> dict[str, Any]:
        bound(request, body)
        secure().accept(round_index, phase, body.payload, body.auth)
        arrived()
        return {"accepted": True}
