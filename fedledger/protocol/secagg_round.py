"""Secure aggregation as a round mode: the published messages and the one pipeline that sums them.

Each member publishes in the content store, in order: a signed ``Join`` (its round keys, index map
and sample count), its ``ShareKeys``, its ``MaskedInput`` (named by its ledger entry: the entry's
digest is the SM3 of the masked bytes) and its ``Reveal``. The aggregator fixes who takes part at
each step; the manifest's ``secagg`` section (:class:`SecAggRecord`) names every message by CID and
SM3 digest, the survivor set and the members caught lying. :func:`compute_secure_round` is what the
aggregator runs and every co-signing node runs again on the same bytes: it checks every ledger
entry, unmasks with ``recompute_aggregate`` and decodes the aligned model, so a wrong aggregate, a
wrong exclusion or a hidden liar is refused exactly as in a plain round. Nothing in this pipeline
ever sees one member's unmasked update.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from fedledger.digests import sm3
from fedledger.errors import FedLedgerError
from fedledger.fl import IndexMap, ModelSpec, ValidationPolicy
from fedledger.fl.server_momentum import momentum_fraction, with_momentum
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.manifest import Exclusion, ReasonCode
from fedledger.protocol.round_check import (
    AggregationRule,
    EntryExcluded,
    LedgerUpdate,
    RoundComputation,
    check_signature,
    needs_history,
)
from fedledger.protocol.secagg_noise import (
    NoisePlan,
    NoisePlanError,
    check_record_privacy,
    common_plan,
    ring_noise_tail,
)
from fedledger.protocol.secagg_rule import SecAggRule, default_threshold
from fedledger.secagg.aggregate import Aggregate, recompute_aggregate
from fedledger.secagg.errors import SecAggError
from fedledger.secagg.layout import flat_positions, flatten_state, global_offsets, unflatten
from fedledger.secagg.messages import AdvertiseKeys, MaskedInput, Published, Reveal, RoundSetup, ShareKeys
from fedledger.secagg.ring import choose_ring
from fedledger.sm9 import Signature, SignMasterPublicKey, SignPrivateKey, SM9Error, sign, verify
from fedledger.store import ContentStore, StoreError
from fedledger.widths import width_to_ppm

MAX_MESSAGE_BYTES = 4 << 20  # a join, share or reveal message: kilobytes for tens of members
MASKED_HEADER_BYTES = 64  # the MaskedInput framing around its ring words
_JOIN_TAG = b"fedledger/secagg-join/v1:"
_JOIN_FIELDS = {"round", "member", "institution", "keys", "index_map", "num_samples", "signature"}
_DP_JOIN_FIELD = "dp"  # only in rounds with distributed noise: the member's NoisePlan


class SecureRoundError(FedLedgerError):
    """A secure round's published messages are inconsistent; the round cannot be computed or signed."""


def _canonical(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Join:
    """Phase 1 of the round: a member's round keys, public index map and sample count, signed with
    its SM9 identity key so that no one (the aggregator included) can swap another member's keys."""

    round_index: int
    member: int  # the member's threshold share index: its id in the secure round
    institution: str  # lower-case address
    keys: AdvertiseKeys
    index_map: dict[str, Any]
    num_samples: int
    signature: bytes = b""
    dp: NoisePlan | None = None  # with DP: the clip this member applied and the z it sizes its noise share with

    def _body(self) -> dict[str, Any]:
        body = {
            "round": self.round_index,
            "member": self.member,
            "institution": self.institution,
            "keys": self.keys.to_bytes().hex(),
            "index_map": self.index_map,
            "num_samples": self.num_samples,
        }
        return body if self.dp is None else {**body, _DP_JOIN_FIELD: self.dp.to_dict()}

    def message(self) -> bytes:
        """What the member's SM9 signature covers."""
        return _JOIN_TAG + _canonical(self._body())

    def signed(self, key: SignPrivateKey) -> Join:
        return Join(**{**self.__dict__, "signature": sign(key, self.message()).to_der()})

    def to_bytes(self) -> bytes:
        return _canonical({**self._body(), "signature": self.signature.hex()})

    def parsed_index_map(self) -> IndexMap:
        try:
            return IndexMap.from_dict(self.index_map)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SecureRoundError(f"member {self.member}: malformed index map ({exc})") from None

    @classmethod
    def from_bytes(cls, data: bytes) -> Join:
        """Strict parse of untrusted bytes (only the canonical encoding is accepted)."""
        try:
            raw = json.loads(data.decode("utf-8"))
            if not isinstance(raw, dict) or set(raw) - {_DP_JOIN_FIELD} != _JOIN_FIELDS:
                raise ValueError(f"fields must be {sorted(_JOIN_FIELDS)} (and {_DP_JOIN_FIELD} with DP)")
            for name in ("round", "member", "num_samples"):
                if isinstance(raw[name], bool) or not isinstance(raw[name], int) or raw[name] < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
            if not isinstance(raw["index_map"], dict) or not isinstance(raw["institution"], str):
                raise ValueError("index_map must be an object and institution a string")
            join = cls(
                raw["round"],
                raw["member"],
                raw["institution"],
                AdvertiseKeys.from_bytes(bytes.fromhex(raw["keys"])),
                raw["index_map"],
                raw["num_samples"],
                bytes.fromhex(raw["signature"]),
                NoisePlan.from_dict(raw[_DP_JOIN_FIELD]) if _DP_JOIN_FIELD in raw else None,
            )
        except (UnicodeDecodeError, ValueError, TypeError, SecAggError) as exc:
            raise SecureRoundError(f"malformed join message: {exc}") from None
        if join.to_bytes() != data:
            raise SecureRoundError("join message is not in canonical form")
        return join

    def check(self, mpk: SignMasterPublicKey, roster: Consortium, round_index: int) -> None:
        """SecureRoundError unless this join is the roster member's own, for this round, and well formed."""
        try:
            member = roster.by_share(self.member)
        except KeyError:
            raise SecureRoundError(f"join from member {self.member}, who holds no share of the roster") from None
        if self.round_index != round_index or self.keys.round_index != round_index or self.keys.member != self.member:
            raise SecureRoundError(f"member {self.member}: join for another round or member")
        if self.institution != member.address.lower():
            raise SecureRoundError(f"member {self.member}: join names another institution")
        if self.num_samples < 1:
            raise SecureRoundError(f"member {self.member}: join with no samples")
        self.parsed_index_map()
        try:
            valid = verify(mpk, member.sm9_identity, self.message(), Signature.from_der(self.signature))
        except SM9Error:
            valid = False
        if not valid:
            raise SecureRoundError(f"member {self.member}: join is not signed by {member.sm9_identity}")


@dataclass(frozen=True)
class Ref:
    """Where a published message lives: its CID and the SM3 digest of its bytes."""

    cid: str
    digest: bytes

    def to_dict(self) -> dict[str, str]:
        return {"cid": self.cid, "digest": "0x" + self.digest.hex()}

    @classmethod
    def from_dict(cls, raw: Any) -> Ref:
        if not isinstance(raw, dict) or set(raw) != {"cid", "digest"} or not isinstance(raw["cid"], str):
            raise SecureRoundError("a message reference must be {cid, digest}")
        digest = raw["digest"]
        if not isinstance(digest, str) or not digest.startswith("0x") or len(digest) != 66:
            raise SecureRoundError("a message digest must be 0x and 64 hex digits")
        try:
            return cls(raw["cid"], bytes.fromhex(digest[2:]))
        except ValueError:
            raise SecureRoundError("a message digest must be hex") from None

    def read(self, store: ContentStore, max_size: int = MAX_MESSAGE_BYTES) -> bytes:
        """The message's bytes, held to the digest (SecureRoundError when missing or altered)."""
        try:
            data = store.read_bytes(self.cid, max_size=max_size)
        except (StoreError, ValueError) as exc:
            raise SecureRoundError(f"published message {self.cid!r} cannot be read: {exc}") from None
        if sm3(data) != self.digest:
            raise SecureRoundError(f"published message {self.cid} does not have its recorded digest")
        return data


def publish(store: ContentStore, data: bytes) -> Ref:
    """Put a message in the store (public: every message of the protocol is safe to publish)."""
    return Ref(store.put(data), sm3(data))


def _by_member(raw: Any, what: str) -> dict[int, Any]:
    if not isinstance(raw, dict):
        raise SecureRoundError(f"secagg {what} must be an object")
    if not all(key.isdigit() and str(int(key)) == key for key in raw):
        raise SecureRoundError(f"secagg {what}: member ids must be decimal integers")
    return {int(key): value for key, value in raw.items()}


def _refs(raw: Any, what: str) -> dict[int, Ref]:
    return {m: Ref.from_dict(value) for m, value in _by_member(raw, what).items()}


@dataclass(frozen=True)
class SecAggRecord:
    """The manifest's ``secagg`` section: every message the aggregate rests on, and who lied."""

    setup: Ref
    joins: dict[int, Ref]
    shares: dict[int, Ref]
    survivors: tuple[int, ...]
    reveals: dict[int, Ref]
    cheaters: dict[int, str] = field(default_factory=dict)  # member -> why its reveal was set aside

    def to_dict(self) -> dict[str, Any]:
        return {
            "setup": self.setup.to_dict(),
            "joins": {str(m): r.to_dict() for m, r in sorted(self.joins.items())},
            "shares": {str(m): r.to_dict() for m, r in sorted(self.shares.items())},
            "survivors": list(self.survivors),
            "reveals": {str(m): r.to_dict() for m, r in sorted(self.reveals.items())},
            "cheaters": {str(m): why for m, why in sorted(self.cheaters.items())},
        }

    @classmethod
    def from_dict(cls, raw: Any) -> SecAggRecord:
        fields = {"setup", "joins", "shares", "survivors", "reveals", "cheaters"}
        if not isinstance(raw, dict) or set(raw) != fields:
            raise SecureRoundError(f"manifest secagg must have exactly the fields {sorted(fields)}")
        survivors = raw["survivors"]
        if not isinstance(survivors, list) or not all(type(m) is int for m in survivors):
            raise SecureRoundError("manifest secagg survivors must be a list of member ids")
        cheaters = _by_member(raw["cheaters"], "cheaters")
        if not all(isinstance(v, str) for v in cheaters.values()):
            raise SecureRoundError("manifest secagg cheaters must map member ids to reasons")
        return cls(
            Ref.from_dict(raw["setup"]),
            _refs(raw["joins"], "joins"),
            _refs(raw["shares"], "shares"),
            tuple(survivors),
            _refs(raw["reveals"], "reveals"),
            cheaters,
        )


def check_join_window(join: Join, spec: ModelSpec, rule: AggregationRule, round_index: int) -> None:
    """SecureRoundError unless the join's index map is the window the rule's selection gives its
    width in this round (the aggregator refuses such a join; a co-signer, a record resting on one)."""
    index_map = join.parsed_index_map()
    try:
        expected = rule.expected_map(spec, index_map.width_rate, round_index)
    except ValueError as exc:
        raise SecureRoundError(f"member {join.member}: no window for its width: {exc}") from None
    if expected is not None and expected.digest() != index_map.digest():
        raise SecureRoundError(
            f"member {join.member}: its index map is not the {rule.selection} window of width "
            f"{index_map.width_rate:g} in round {round_index}"
        )


def build_setup(
    round_index: int, rule: SecAggRule, joins: Mapping[int, Join], global_shapes: Mapping[str, tuple[int, ...]]
) -> RoundSetup:
    """The round's public setup from the members' joins: weights, positions, and the smallest exact ring
    (with room for the members' summed noise shares when their joins declare a noise plan)."""
    if len(joins) < rule.threshold:
        raise SecureRoundError(f"only {len(joins)} members joined, threshold is {rule.threshold}")
    plan = joins_plan(joins)
    positions = {}
    for m, join in joins.items():
        index_map = join.parsed_index_map()
        if dict(index_map.global_shapes) != dict(global_shapes):
            raise SecureRoundError(f"member {m}: index map for another global model")
        positions[m] = flat_positions(index_map.global_shapes, index_map.indices)
    weights = {m: j.num_samples for m, j in joins.items()}
    _, length = global_offsets(global_shapes)
    tail = 0 if plan is None else ring_noise_tail(plan, rule.frac_bits, weights, positions, length, rule.threshold)
    try:
        ring = choose_ring(len(joins), max(weights.values()), rule.value_bound, rule.frac_bits, tail)
        return RoundSetup(round_index, rule.threshold, ring, length, weights, positions)
    except SecAggError as exc:
        raise SecureRoundError(f"no secure round for these members: {exc}") from None


def joins_plan(joins: Mapping[int, Join]) -> NoisePlan | None:
    """The noise plan every join declares (None: a round without DP); SecureRoundError when they differ."""
    try:
        return common_plan(j.dp for j in joins.values())
    except NoisePlanError as exc:
        raise SecureRoundError(str(exc)) from None


@dataclass
class SecureMessages:
    """The published messages of one round, read from the store and checked."""

    joins: dict[int, Join]
    setup: RoundSetup
    shares: dict[int, ShareKeys]
    reveals: dict[int, Reveal]


def read_messages(
    store: ContentStore,
    mpk: SignMasterPublicKey,
    roster: Consortium,
    round_index: int,
    rule: SecAggRule,
    global_shapes: Mapping[str, tuple[int, ...]],
    record: SecAggRecord,
) -> SecureMessages:
    """Fetch and check every message the record names; the setup must be the one the joins give."""
    joins = {}
    for m, ref in record.joins.items():
        join = Join.from_bytes(ref.read(store))
        if join.member != m:
            raise SecureRoundError(f"the join recorded for member {m} is member {join.member}'s")
        join.check(mpk, roster, round_index)
        joins[m] = join
    setup = build_setup(round_index, rule, joins, global_shapes)
    if setup.digest() != record.setup.digest:
        raise SecureRoundError("the recorded setup is not the one the members' joins give")
    try:
        shares = {m: ShareKeys.from_bytes(ref.read(store)) for m, ref in record.shares.items()}
        reveals = {m: Reveal.from_bytes(ref.read(store)) for m, ref in record.reveals.items()}
    except SecAggError as exc:
        raise SecureRoundError(f"a published share or reveal message is malformed: {exc}") from None
    if not set(shares) <= set(joins) or any(s.member != m for m, s in shares.items()):
        raise SecureRoundError("shares recorded for members that did not join, or under another member's id")
    return SecureMessages(joins, setup, shares, reveals)


def masked_entry(
    store: ContentStore,
    mpk: SignMasterPublicKey,
    roster: Consortium,
    messages: SecureMessages,
    update: LedgerUpdate,
) -> tuple[int, MaskedInput]:
    """One ledger entry of a secure round, checked in a fixed order; EntryExcluded names the first failure."""
    check_signature(mpk, update)
    entry = update.entry
    try:
        member = roster.by_address(update.address).share_index
    except KeyError:
        raise EntryExcluded(ReasonCode.NOT_MEMBER, f"{entry.institution} is not in the consortium roster") from None
    if member not in messages.shares:
        raise EntryExcluded(ReasonCode.NOT_IN_SECURE_ROUND, "its member shared no keys in this secure round")
    setup = messages.setup
    size = MASKED_HEADER_BYTES + setup.positions[member].size * (setup.ring.bits // 8)
    try:
        data = store.read_bytes(entry.cid, max_size=size)
    except (StoreError, ValueError) as exc:
        raise EntryExcluded(ReasonCode.CONTENT_UNAVAILABLE, f"masked input {entry.cid!r} unavailable: {exc}") from None
    if sm3(data) != entry.digest:
        raise EntryExcluded(ReasonCode.DIGEST_MISMATCH, "the masked input's SM3 differs from the ledger entry's digest")
    try:
        masked = MaskedInput.from_bytes(data)
    except SecAggError as exc:
        raise EntryExcluded(ReasonCode.MALFORMED_FILE, f"not a masked input: {exc}") from None
    if masked.member != member or masked.round_index != setup.round_index:
        raise EntryExcluded(ReasonCode.FIELDS_MISMATCH, "the masked input is for another member or round")
    if masked.values.shape != setup.positions[member].shape or masked.values.dtype != np.dtype(setup.ring.dtype):
        raise EntryExcluded(ReasonCode.WRONG_SHAPE, "the masked input does not match its sub-model or the ring")
    index_map = messages.joins[member].parsed_index_map()
    if entry.num_samples != setup.weights[member] or entry.mapping_digest != index_map.digest():
        raise EntryExcluded(ReasonCode.FIELDS_MISMATCH, "the ledger entry's samples or index map differ from its join")
    if entry.width_ppm != width_to_ppm(index_map.width_rate):
        raise EntryExcluded(ReasonCode.FIELDS_MISMATCH, "the ledger entry's width differs from its join's index map")
    return member, masked


def check_entries(
    store: ContentStore,
    mpk: SignMasterPublicKey,
    roster: Consortium,
    messages: SecureMessages,
    updates: Iterable[LedgerUpdate],
) -> tuple[dict[int, tuple[LedgerUpdate, MaskedInput]], list[Exclusion]]:
    """Every entry in address order: the valid masked inputs by member, and the exclusions with reasons."""
    valid: dict[int, tuple[LedgerUpdate, MaskedInput]] = {}
    excluded: list[Exclusion] = []
    for update in sorted(updates, key=lambda u: u.address):
        try:
            member, masked = masked_entry(store, mpk, roster, messages, update)
        except EntryExcluded as exc:
            excluded.append(Exclusion(update.address, update.entry.cid, exc.code, exc.reason))
            continue
        valid[member] = (update, masked)
    return valid, excluded


def compute_secure_round(
    store: ContentStore,
    mpk: SignMasterPublicKey,
    roster: Consortium,
    round_index: int,
    base_state: Mapping[str, torch.Tensor],
    updates: Iterable[LedgerUpdate],
    rule: SecAggRule,
    record: SecAggRecord,
    *,
    dp: AggregationRule | None = None,
    before_previous: Mapping[str, torch.Tensor] | None = None,
    spec: ModelSpec | None = None,
) -> tuple[RoundComputation, Aggregate]:
    """The secure round as the record publishes it: decisions, the unmasked aggregate, the decoded model.

    The record's ``cheaters`` are not an input: they are recomputed (and written into the result's
    ``secagg`` section), so a node that compares sections refuses a record that hides or invents a liar.
    ``dp``: the round's rule; its DP parameters must be exactly what the members' noise plan (in their
    joins), the setup and the survivors imply (members clipped their updates and added their Skellam
    shares before masking, so the noise is inside the sum and no noise is added here, docs/secagg.md).
    A rule with server momentum takes its step last, on the unmasked (noised) mean, from
    ``before_previous``, the global model two rounds back (None in round 0). With ``spec``, every
    join's index map must be the window the rule's selection gives its width.
    """
    shapes = {name: tuple(t.shape) for name, t in base_state.items()}
    messages = read_messages(store, mpk, roster, round_index, rule, shapes, record)
    if spec is not None and dp is not None:
        for join in messages.joins.values():
            check_join_window(join, spec, dp, round_index)
    valid, excluded = check_entries(store, mpk, roster, messages, updates)
    survivors = set(record.survivors)
    missing = survivors - set(valid)
    if missing:
        raise SecureRoundError(f"survivor(s) {sorted(missing)} have no valid masked input on the ledger")
    for member in sorted(set(valid) - survivors):
        update = valid.pop(member)[0]
        late = "its masked input arrived after the survivor set was fixed"
        excluded.append(Exclusion(update.address, update.entry.cid, ReasonCode.NOT_IN_SECURE_ROUND, late))
    try:
        claimed = None if dp is None else dp.privacy
        check_record_privacy(claimed, messages.setup, joins_plan(messages.joins), sorted(valid))
    except NoisePlanError as exc:
        raise SecureRoundError(str(exc)) from None
    adverts = {m: j.keys for m, j in messages.joins.items()}
    published = Published(
        messages.setup, adverts, messages.shares, {m: masked for m, (_, masked) in valid.items()}, messages.reveals
    )
    try:
        aggregate = recompute_aggregate(published)
    except SecAggError as exc:
        raise SecureRoundError(f"the round cannot be unmasked: {exc}") from None
    previous = flatten_state(base_state)
    flat = aggregate.mean(previous)
    state = {name: torch.from_numpy(np.array(v, dtype=np.float32)) for name, v in unflatten(flat, shapes).items()}
    included = sorted((u for u, _ in valid.values()), key=lambda u: u.address)
    if dp is not None and dp.server_momentum:
        state = _with_momentum(state, aggregate, shapes, base_state, dp, round_index, before_previous)
    excluded.sort(key=lambda e: e.institution)
    checked = SecAggRecord(
        record.setup, record.joins, record.shares, record.survivors, record.reveals, dict(aggregate.cheaters)
    )
    return RoundComputation(included, excluded, state, checked.to_dict()), aggregate


def _with_momentum(
    state: dict[str, torch.Tensor],
    aggregate: Aggregate,
    shapes: Mapping[str, tuple[int, ...]],
    base_state: Mapping[str, torch.Tensor],
    rule: AggregationRule,
    round_index: int,
    before_previous: Mapping[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The server momentum step on the decoded mean, on the entries some survivor covered (public
    coverage), exactly as a plain round takes it on the aligned mean."""
    if needs_history(rule, round_index) and before_previous is None:
        raise SecureRoundError("a round with server momentum after round 0 needs the global model two rounds back")
    covered = {name: torch.from_numpy(np.array(w) > 0) for name, w in unflatten(aggregate.coverage, shapes).items()}
    return with_momentum(state, base_state, before_previous, momentum_fraction(rule.server_momentum), covered)


def secure_aggregation_rule(
    policy: ValidationPolicy, members: int, selection: str | None = None, server_momentum: float = 0.0
) -> AggregationRule:
    """The rule of a secure round, as the aggregator writes it and every node expects it:
    alignment of masked inputs with t = floor(n/2) + 1 of the roster's n members."""
    secagg = SecAggRule(default_threshold(members))
    return AggregationRule("alignment", policy, secagg=secagg, selection=selection, server_momentum=server_momentum)
