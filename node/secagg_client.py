"""The member's side of a secure round, over the aggregator's API, one poll at a time.

The node trains as usual, then follows the aggregator's secure phases: it joins with signed round
keys, checks every other member's join (SM9 signature, and that the published setup is what the
joins give) before it deals its shares, sends its masked input to the store with its ledger entry
for it, and reveals for the one survivor set it is shown. The unmasked update never leaves the
node: the masked input is the only form of it that is stored or sent. On a ledger with a privacy
budget the node clips its update to the announced plan's clip and adds its Skellam noise share
before masking, after checking that the round's parameters fit the budget, so no one ever sees its
update or the round's sum without noise. Round keys live in memory only; a node that restarts
mid-round drops out of that round (the protocol tolerates it).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from fedledger.dp.central_aggregation import clip_update
from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_text
from fedledger.fl import ClientUpdate, load_client_update, load_global
from fedledger.protocol.privacy import ledger_budget
from fedledger.protocol.secagg_noise import NoisePlan, NoisePlanError, noise_share, secure_round_privacy
from fedledger.protocol.secagg_round import Join, Ref, SecureRoundError, build_setup, publish
from fedledger.protocol.session_auth import sign_payload
from fedledger.secagg.errors import SecAggError
from fedledger.secagg.layout import flatten_state
from fedledger.secagg.member import Member, RoundKeys
from fedledger.secagg.messages import RoundSetup, ShareKeys
from node.participant import (
    AggregatorUnavailable,
    NodeContext,
    aggregator_view,
    round_dir,
    submit_entry,
    train_for_round,
)
from node.privacy_gate import privacy_refusal
from node.secagg_check import REVEALED_FOR
from node.training_step import TrainedUpdate

log = logging.getLogger(__name__)

_ORDER = ("join", "share", "masked", "reveal", "done")


@dataclass
class _Round:
    """This node's state in one secure round (secrets in memory only)."""

    keys: RoundKeys = field(default_factory=RoundKeys)
    trained: TrainedUpdate | None = None
    plan: NoisePlan | None = None  # with DP: the clip and noise multiplier this node applies
    values: np.ndarray | None = None
    member: Member | None = None
    done: set[str] = field(default_factory=set)  # phases whose message the aggregator accepted
    sent: dict[str, bytes] = field(default_factory=dict)  # phase -> the message made for it (made once)
    out: str = ""  # why this node left the round ("" while it takes part)


def _refs(view: dict[str, Any], key: str) -> dict[int, Ref]:
    raw = view.get(key)
    if not isinstance(raw, dict) or not all(isinstance(k, str) and k.isdigit() for k in raw):
        raise SecureRoundError(f"the secure round view has no valid {key}")
    return {int(k): Ref.from_dict(v) for k, v in raw.items()}


class SecureClient:
    """Follows the aggregator's secure phases for the open round."""

    def __init__(self, ctx: NodeContext, http: httpx.Client) -> None:
        if ctx.rule.secagg is None:
            raise SecureRoundError("the node's rule has no secure aggregation")
        self.ctx = ctx
        self.http = http
        self.rule = ctx.rule.secagg
        self.me = ctx.consortium.by_address(ctx.account.address).share_index
        self._rounds: dict[int, _Round] = {}

    def step(self, round_index: int) -> str:
        """Act once on the round's current phase; returns the phase seen ('none' before the round starts)."""
        response = aggregator_view(self.http, f"{self.ctx.aggregator_url}/rounds/{round_index}/secagg")
        if response is None:
            return "none"
        try:
            view = response.json()
        except ValueError:
            raise SecureRoundError("the secure round view is not JSON") from None
        phase = view.get("phase") if isinstance(view, dict) else None
        if phase not in (*_ORDER, "failed"):
            raise SecureRoundError(f"the secure round view has an unknown phase {str(phase)[:40]!r}")
        state = self._rounds.setdefault(round_index, _Round())
        if state.out or phase in ("done", "failed"):
            return str(phase)
        try:
            self._act(round_index, state, view, str(phase))
        except (SecAggError, SecureRoundError) as exc:
            state.out = str(exc)  # the protocol tolerates a member that leaves; say why once
            log.error("%s: leaves secure round %d: %s", self.ctx.name, round_index, exc)
        return str(phase)

    def _behind(self, state: _Round, phase: str) -> bool:
        """True when the round moved past a phase this node never completed: it has dropped out."""
        return any(p not in state.done for p in _ORDER[: _ORDER.index(phase)])

    def _act(self, round_index: int, state: _Round, view: dict[str, Any], phase: str) -> None:
        if phase in state.done:
            return
        if self._behind(state, phase):
            raise SecureRoundError(f"the round reached phase {phase} before this node took its earlier steps")
        if phase == "join":
            self._join(round_index, state, view)
        elif phase == "share":
            self._share(round_index, state, view)
        elif phase == "masked":
            self._masked(round_index, state, view)
        elif phase == "reveal":
            self._reveal(round_index, state, view)

    def _join(self, round_index: int, state: _Round, view: dict[str, Any]) -> None:
        ctx = self.ctx
        if state.trained is None:
            state.plan = self._plan(view)
            folder = round_dir(ctx, round_index)
            opened = ctx.ledger.rounds_opened(round=round_index)
            reuse = (
                TrainedUpdate.load_summary(
                    folder / "trained.json", folder / "update.safetensors", opened[0].base_digest
                )
                if opened
                else None
            )
            with ctx.phases.measure(round_index, "train"):
                state.trained = reuse or train_for_round(ctx, round_index)
            update = self._clipped(round_index, load_client_update(state.trained.path), state.plan)
            state.values = flatten_state(update.state)
            join = Join(
                round_index,
                self.me,
                ctx.account.address.lower(),
                state.keys.advert(round_index, self.me),
                update.index_map.to_dict(),
                state.trained.num_samples,
                dp=state.plan,
            ).signed(ctx.sm9_key)
            state.sent["join"] = join.to_bytes()
        self._post(round_index, "join", state.sent["join"], state)

    def _plan(self, view: dict[str, Any]) -> NoisePlan | None:
        """On a ledger with a privacy budget, the round's noise plan as the aggregator announces it, if its
        clip is this node's (a consortium term); the multiplier is held to the budget before masking."""
        setting = self.ctx.ledger.privacy_budget()
        if ledger_budget(setting.epsilon, setting.delta) is None:
            return None
        try:
            plan = NoisePlan.from_dict(view.get("dp"))
        except NoisePlanError as exc:
            raise SecureRoundError(f"a round under the privacy budget without a usable noise plan: {exc}") from None
        if plan.clip != self.ctx.dp_clip:
            raise SecureRoundError(f"the round's DP clip {plan.clip:g} is not this node's {self.ctx.dp_clip:g}")
        return plan

    def _clipped(self, round_index: int, update: ClientUpdate, plan: NoisePlan | None) -> ClientUpdate:
        """With DP, the update with its change from the base clipped (central DP's own clipping) before it
        is encoded and masked: nobody else can clip what they cannot see. The bound leaves room for the
        fixed-point rounding (up to 2**-f per entry), so the encoded change stays within the plan's clip
        and the noise's calibration holds."""
        if plan is None:
            return update
        size = sum(t.numel() for t in update.state.values())
        bound = self.ctx.dp_clip - math.sqrt(size) * 2.0**-self.rule.frac_bits
        if bound <= 0:
            raise SecureRoundError(
                f"DP clip {self.ctx.dp_clip:g} is below the fixed-point rounding of a {size}-entry update"
            )
        base, _ = load_global(round_dir(self.ctx, round_index) / "base.safetensors")
        return clip_update(update, base, bound)

    def _setup(self, round_index: int, view: dict[str, Any]) -> tuple[RoundSetup, dict[int, Join]]:
        """The published setup, held to the members' signed joins (nobody can swap keys or weights)."""
        store, ctx = self.ctx.store, self.ctx
        joins = {}
        for m, ref in _refs(view, "joins").items():
            join = Join.from_bytes(ref.read(store))
            join.check(ctx.master_public_key, ctx.consortium, round_index)
            if join.member != m:
                raise SecureRoundError(f"the join listed for member {m} is member {join.member}'s")
            joins[m] = join
        raw_setup = view.get("setup")
        setup = RoundSetup.from_bytes(Ref.from_dict(raw_setup).read(store))
        mine = joins.get(self.me)
        if mine is None:
            raise SecureRoundError("this node's join is not in the round's setup")
        shapes = dict(mine.parsed_index_map().global_shapes)
        if build_setup(round_index, self.rule, joins, shapes).digest() != setup.digest():
            raise SecureRoundError("the published setup is not the one the members' joins give")
        return setup, joins

    def _share(self, round_index: int, state: _Round, view: dict[str, Any]) -> None:
        if state.member is None:
            setup, joins = self._setup(round_index, view)
            state.member = Member(self.me, setup, state.keys)
            state.sent["share"] = state.member.share_keys({m: j.keys for m, j in joins.items()}).to_bytes()
        self._post(round_index, "share", state.sent["share"], state)

    def _masked(self, round_index: int, state: _Round, view: dict[str, Any]) -> None:
        ctx = self.ctx
        assert state.trained is not None
        if ctx.ledger.has_submitted(round_index, ctx.account.address):
            state.done.add("masked")
            return
        with ctx.phases.measure(round_index, "submit"):
            ref = publish(ctx.store, self.masked_input(state, view))  # public: uniform words, the sub-model's size
            submit_entry(ctx, round_index, state.trained, ref.cid, ref.digest)
        state.done.add("masked")

    def masked_input(self, state: _Round, view: dict[str, Any]) -> bytes:
        """Open this member's shares from the listed dealers, agree the pair keys, mask the update (with
        DP: plus this member's noise share, once the round's parameters are held to the budget)."""
        assert state.member is not None and state.values is not None
        shares = {m: ShareKeys.from_bytes(ref.read(self.ctx.store)) for m, ref in _refs(view, "shares").items()}
        state.member.receive_shares(shares)
        noise = None if state.plan is None else budgeted_noise_share(self.ctx, state.member.setup, self.me, state.plan)
        return state.member.masked_input(state.values, self.rule.value_bound, noise).to_bytes()

    def _reveal(self, round_index: int, state: _Round, view: dict[str, Any]) -> None:
        survivors = view.get("survivors")
        if not isinstance(survivors, list) or not all(type(m) is int for m in survivors):
            raise SecureRoundError("the secure round view has no valid survivor set")
        if self.me not in survivors or state.member is None:
            state.done.add("reveal")
            return
        if "reveal" not in state.sent:
            state.sent["reveal"] = state.member.reveal(survivors).to_bytes()  # refuses a second survivor set
            # remembered for the record check: the record must name the very set this node revealed for
            atomic_write_text(round_dir(self.ctx, round_index) / REVEALED_FOR, json.dumps(sorted(survivors)))
        self._post(round_index, "reveal", state.sent["reveal"], state)

    def _post(self, round_index: int, phase: str, data: bytes, state: _Round) -> None:
        """Store the message, post its reference signed by this node; resent until accepted."""
        ref = publish(self.ctx.store, data)
        payload = {"round": round_index, "member": self.me, **ref.to_dict()}
        body = {"payload": payload, "auth": sign_payload(self.ctx.account.key, payload)}
        response = self.http.post(f"{self.ctx.aggregator_url}/rounds/{round_index}/secagg/{phase}", json=body)
        if response.status_code >= 500 or response.status_code == 429:
            raise AggregatorUnavailable(f"aggregator answered {response.status_code} to the {phase} message")
        if response.status_code >= 400:
            raise FedLedgerError(f"aggregator refused the {phase} message: {response.text[:300]}")
        state.done.add(phase)
        log.info("%s: secure round %d: %s message accepted", self.ctx.name, round_index, phase)


def budgeted_noise_share(ctx: NodeContext, setup: RoundSetup, member: int, plan: NoisePlan) -> np.ndarray:
    """``member``'s noise share, once the round's DP parameters (from the public setup and the plan) are
    held to the ledger's budget: the sum is released at the reveal whether or not a record is ever signed,
    so the check comes before any noise is added (SecureRoundError: this node leaves the round)."""
    try:
        planned = secure_round_privacy(setup, plan, setup.members)
        refusal = privacy_refusal(ctx.ledger, ctx.store, setup.round_index, planned)
        if refusal is not None:
            raise SecureRoundError(refusal)
        return noise_share(setup, member, plan)
    except NoisePlanError as exc:
        raise SecureRoundError(f"no noise share for this round: {exc}") from None
