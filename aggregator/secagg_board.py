"""The secure round's message board: what members post to the aggregator's API in each phase.

Members stay outbound-only: each puts its message in the content store and posts its CID and SM3
digest, signed with its Ethereum key (and bound to its client certificate under mutual TLS). The
board fetches the message, checks it (a join's SM9 signature, the phase, the member's id) and keeps
it; nodes read the phase and every accepted message's reference from ``GET /rounds/{r}/secagg``.
The board holds only public messages: nothing here can open a member's update.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from fedledger.fileio import atomic_write_bytes
from fedledger.fl import ModelSpec
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.round_check import AggregationRule
from fedledger.protocol.secagg_noise import NoisePlan
from fedledger.protocol.secagg_round import Join, Ref, SecureRoundError, check_join_window
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
    """The phase and accepted messages of one round; thread-safe (HTTP handlers and the driver).

    With a ``path`` every change is saved there (references only: the messages are in the store),
    so an aggregator that restarts mid-round resumes the phases where they were; the members keep
    their round keys in memory and go on.
    """

    def __init__(self, round_index: int, path: Path | None = None, plan: NoisePlan | None = None) -> None:
        self.round_index = round_index
        self.path = path
        self.plan = plan  # with DP: the noise plan every join must declare (announced in the view)
        self.phase = "join"
        self.problem = ""
        self.joins: dict[int, tuple[Ref, Join]] = {}
        self.setup: tuple[Ref, RoundSetup] | None = None
        self.shares: dict[int, tuple[Ref, ShareKeys]] = {}
        self.survivors: list[int] = []
        self.reveals: dict[int, tuple[Ref, Reveal]] = {}
        self.lock = threading.Lock()

    def save(self) -> None:
        """Write the round's state (phase and message references) atomically, if it has a path."""
        if self.path is None:
            return
        with self.lock:
            state = {
                "round": self.round_index,
                "phase": self.phase,
                "problem": self.problem,
                "joins": {str(m): r.to_dict() for m, (r, _) in sorted(self.joins.items())},
                "setup": None if self.setup is None else self.setup[0].to_dict(),
                "shares": {str(m): r.to_dict() for m, (r, _) in sorted(self.shares.items())},
                "survivors": list(self.survivors),
                "reveals": {str(m): r.to_dict() for m, (r, _) in sorted(self.reveals.items())},
            }
        atomic_write_bytes(self.path, json.dumps(state, sort_keys=True).encode())

    @classmethod
    def restore(cls, path: Path, store: ContentStore, plan: NoisePlan | None = None) -> SecureRound:
        """The round as saved at ``path``, its messages read back from the store and parsed again."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            sr = cls(int(raw["round"]), path, plan)
            sr.phase, sr.problem = str(raw["phase"]), str(raw["problem"])
            if sr.phase not in PHASES:
                raise ValueError(f"unknown phase {sr.phase!r}")

            def read(table: dict[str, Any], parse: Callable[[bytes], Any]) -> dict[int, tuple[Ref, Any]]:
                refs = {int(m): Ref.from_dict(r) for m, r in table.items()}
                return {m: (ref, parse(ref.read(store))) for m, ref in refs.items()}

            sr.joins = read(raw["joins"], Join.from_bytes)
            if raw["setup"] is not None:
                ref = Ref.from_dict(raw["setup"])
                sr.setup = (ref, RoundSetup.from_bytes(ref.read(store)))
            sr.shares = read(raw["shares"], ShareKeys.from_bytes)
            sr.survivors = [int(m) for m in raw["survivors"]]
            sr.reveals = read(raw["reveals"], Reveal.from_bytes)
        except (OSError, ValueError, KeyError, TypeError, SecureRoundError, SecAggError) as exc:
            raise SecureRoundError(f"the saved secure round {path.name} cannot be resumed: {exc}") from None
        return sr

    def view(self) -> dict[str, Any]:
        with self.lock:
            view: dict[str, Any] = {
                "round": self.round_index,
                "phase": self.phase,
                "joins": {str(m): r.to_dict() for m, (r, _) in sorted(self.joins.items())},
            }
            if self.plan is not None:
                view["dp"] = self.plan.to_dict()
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
        self,
        store: ContentStore,
        mpk: SignMasterPublicKey,
        roster: Consortium,
        is_active: Callable[[str], bool],
        state_dir: Path | None = None,
        plan: NoisePlan | None = None,
        window: tuple[ModelSpec, AggregationRule] | None = None,
    ) -> None:
        """``window``: the model and the rule whose selection each join's index map must follow."""
        self.store = store
        self.plan = plan  # the run's noise plan (None: no DP), the same for every round
        self.mpk = mpk
        self.roster = roster
        self.is_active = is_active
        self.state_dir = state_dir
        self.window = window
        self._rounds: dict[int, SecureRound] = {}
        self._lock = threading.Lock()

    def round(self, round_index: int) -> SecureRound:
        """The round's board: resumed from its saved state if there is one, else new."""
        with self._lock:
            if round_index not in self._rounds:
                path = None if self.state_dir is None else self.state_dir / f"secagg-round-{round_index}.json"
                if path is not None and path.exists():
                    self._rounds[round_index] = SecureRound.restore(path, self.store, self.plan)
                else:
                    self._rounds[round_index] = SecureRound(round_index, path, self.plan)
            return self._rounds[round_index]

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
            if join.dp != sr.plan:
                raise SecureRoundError(f"the join's noise plan {join.dp} is not the round's {sr.plan}")
            if self.window is not None:
                check_join_window(join, *self.window, sr.round_index)
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
        sr.save()


def add_secure_routes(
    app: FastAPI, board: Any, bound: Callable[[Request, Any], None], arrived: Callable[[], object]
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
