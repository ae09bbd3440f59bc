"""One checking and aggregation pipeline for a round, run by the aggregator to produce the global model
and the manifest, and by every co-signing node to recompute both before it signs.

Because both sides run this very function on the same ledger entries, an aggregator (alone or with
members) cannot include an entry an honest node would refuse, leave out one it would accept, give a
false reason, or weight an update by what its file claims: weights, width and index map come from
the ledger entry, and a file that says otherwise is excluded (``fields_mismatch``). Each entry is
checked in a fixed order and the first failing check names its reason code, so honest parties agree
on the code too. Updates are sealed: each is fetched by the ledger's ciphertext CID, opened with
this party's reader keys and held to the ledger's plaintext SM3 digest. Updates are opened from disk one
at a time; the aggregation holds at most ``BATCH_BYTES`` of them before it folds them into its sums.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch

from fedledger.dp.accountant import RoundPrivacy
from fedledger.dp.central_aggregation import CentralDPAggregation
from fedledger.envelope import EnvelopeError, Recipient
from fedledger.errors import FedLedgerError
from fedledger.fl import (
    AlignmentAggregation,
    ClientUpdate,
    IndexMap,
    ModelFileError,
    ModelSpec,
    UpdateRejected,
    ValidationPolicy,
    load_client_update,
    validate_update,
)
from fedledger.fl.rules import AGGREGATION_RULES, DEFAULT_RULE, aggregation_for, server_momentum_for
from fedledger.fl.server_momentum import MomentumAfter
from fedledger.fl.submodel import SELECTIONS, make_index_map
from fedledger.protocol.entries import SubmittedEvent, UpdateEntry
from fedledger.protocol.errors import ModelDigestMismatch, SealedModelError
from fedledger.protocol.manifest import (
    MAX_REASON_CHARS,
    Exclusion,
    Inclusion,
    ManifestError,
    ReasonCode,
    RoundManifest,
)
from fedledger.protocol.merkle import merkle_root
from fedledger.protocol.model_files import ModelVault, sealed_to
from fedledger.protocol.noise_seed import NoiseSeedError, PublishedNoise, noise_seed
from fedledger.protocol.privacy import DP_RULE_KEY, PrivacyRuleError, dp_rule, round_privacy_of
from fedledger.protocol.secagg_rule import SECAGG_RULE_KEY, SecAggRule, SecAggRuleError
from fedledger.protocol.signature_cache import VerifiedSignatures
from fedledger.sm9 import Signature, SignMasterPublicKey, SM9Error, verify
from fedledger.store import StoreError
from fedledger.widths import width_to_ppm

log = logging.getLogger(__name__)

RULES = AGGREGATION_RULES
NOISE_RULE_KEY = "noise"
SELECTION_RULE_KEY = "selection"  # absent: any well-formed index map (manifests before the key existed)
MOMENTUM_RULE_KEY = "server_momentum"  # absent: 0, no server momentum (manifests before the key existed)
_OPTIONAL_RULE_KEYS = {DP_RULE_KEY, NOISE_RULE_KEY, SECAGG_RULE_KEY, SELECTION_RULE_KEY, MOMENTUM_RULE_KEY}


@dataclass(frozen=True)
class LedgerUpdate:
    """An ``UpdateSubmitted`` entry with its signature and the submitter's SM9 identity on the ledger
    (None when the submitting address holds none)."""

    entry: UpdateEntry
    signature_der: bytes
    sm9_identity: str | None

    @property
    def address(self) -> str:
        return self.entry.institution.lower()


class SignedSubmission(SubmittedEvent, Protocol):
    """An ``UpdateSubmitted`` event with the entry's SM9 signature (the chain client's event fits)."""

    @property
    def sm9_signature(self) -> bytes: ...


def ledger_updates(
    chain_id: int, contract: str, events: Iterable[SignedSubmission], identities: Mapping[str, str]
) -> list[LedgerUpdate]:
    """The round's entries as the pipeline takes them; ``identities`` maps lower-case address to SM9 id."""
    return [
        LedgerUpdate(
            UpdateEntry.from_event(chain_id, contract, e),
            bytes(e.sm9_signature),
            identities.get(e.institution.lower()),
        )
        for e in events
    ]


@dataclass(frozen=True)
class AggregationRule:
    """The aggregation rule and the validation policy, as the manifest publishes them; a round with
    central DP also names its parameters (``dp``) and its published noise secret (``noise``).

    ``selection``: which units a member of each width trains (``rolling``, ``static``, ``random``;
    every update's index map must be the one it gives), None: any well-formed map.
    ``server_momentum``: beta of the momentum step on the round's result (0: none), with the
    global model two rounds back (:func:`fedledger.protocol.momentum_history.before_previous_model`)."""

    name: str = "alignment"
    policy: ValidationPolicy = field(default_factory=ValidationPolicy)
    privacy: RoundPrivacy | None = None  # the round's DP parameters (``dp`` in the manifest), None: no DP
    secagg: SecAggRule | None = None  # secure aggregation (``secagg`` in the manifest), None: plain updates
    noise: PublishedNoise | None = None  # central DP's committed noise secret, with ``privacy``
    selection: str | None = None
    server_momentum: float = 0.0

    def __post_init__(self) -> None:
        self._check_selection_and_momentum()
        if self.name not in RULES:
            raise ManifestError(f"unknown aggregation rule {self.name!r} (known: {', '.join(RULES)})")
        if self.secagg is not None and (self.name != "alignment" or self.policy.max_norm is not None):
            raise ManifestError(
                "secure aggregation sums masked inputs: its rule is alignment, and no norm bound can be checked "
                "on a masked input (the secagg value bound limits each entry instead)"
            )
        if self.secagg is not None and self.privacy is not None:  # never claim noise the round does not add
            self.distributed_privacy()  # the members' Skellam shares, inside their masked inputs (docs/secagg.md)
        elif (self.privacy is None) != (self.noise is None):
            raise ManifestError(f"a rule with DP names both {DP_RULE_KEY} and {NOISE_RULE_KEY}, one without neither")

    def to_dict(self) -> dict[str, Any]:
        policy = self.policy
        out: dict[str, Any] = {"name": self.name, "max_norm": policy.max_norm, "norm_policy": policy.norm_policy}
        if self.secagg is not None:
            out[SECAGG_RULE_KEY] = self.secagg.to_dict()
        if self.privacy is not None:
            out[DP_RULE_KEY] = dp_rule(self.privacy)
        if self.noise is not None:
            out[NOISE_RULE_KEY] = self.noise.to_dict()
        if self.selection is not None:
            out[SELECTION_RULE_KEY] = self.selection
        if self.server_momentum:
            out[MOMENTUM_RULE_KEY] = float(self.server_momentum)
        return out

    def _check_selection_and_momentum(self) -> None:
        if self.selection is not None and self.selection not in SELECTIONS:
            raise ManifestError(f"unknown selection {self.selection!r} (known: {', '.join(SELECTIONS)})")
        beta = self.server_momentum
        if isinstance(beta, bool) or not isinstance(beta, int | float):
            raise ManifestError(f"server_momentum must be a number, got {beta!r}")
        if beta and self.name != DEFAULT_RULE:
            raise ManifestError(
                f"server_momentum applies to {DEFAULT_RULE} only: the robust rule {self.name} keeps it at 0"
            )
        try:
            server_momentum_for(self.name, beta)  # in [0, 1), a fraction p/q with q <= 1000
        except ValueError as exc:
            raise ManifestError(str(exc)) from None

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> AggregationRule:
        """The rule a manifest names; ManifestError for anything this code cannot recompute."""
        if set(raw) - _OPTIONAL_RULE_KEYS != {"name", "max_norm", "norm_policy"}:
            raise ManifestError(
                f"manifest rule must have name, max_norm and norm_policy (and {DP_RULE_KEY}, {NOISE_RULE_KEY} "
                f"for DP, {SECAGG_RULE_KEY} for secure aggregation, {SELECTION_RULE_KEY}, {MOMENTUM_RULE_KEY}), "
                f"got {sorted(raw)}"
            )
        try:
            privacy = round_privacy_of(raw)
            noise = PublishedNoise.from_dict(raw[NOISE_RULE_KEY]) if NOISE_RULE_KEY in raw else None
            secagg = SecAggRule.from_dict(raw[SECAGG_RULE_KEY]) if SECAGG_RULE_KEY in raw else None
        except (PrivacyRuleError, NoiseSeedError, SecAggRuleError) as exc:
            raise ManifestError(f"manifest rule: {exc}") from None
        max_norm = raw["max_norm"]
        if max_norm is not None and (isinstance(max_norm, bool) or not isinstance(max_norm, int | float)):
            raise ManifestError("manifest rule max_norm must be a number or null")
        try:
            policy = ValidationPolicy(None if max_norm is None else float(max_norm), str(raw["norm_policy"]))
        except ValueError as exc:
            raise ManifestError(f"manifest rule: {exc}") from None
        selection = raw.get(SELECTION_RULE_KEY)
        if selection is not None and not isinstance(selection, str):
            raise ManifestError("manifest rule selection must be a string")
        beta = raw.get(MOMENTUM_RULE_KEY, 0.0)
        if MOMENTUM_RULE_KEY in raw and (not isinstance(beta, float) or beta == 0):
            raise ManifestError("manifest rule server_momentum must be a number in (0, 1); 0 is written by omission")
        return cls(str(raw["name"]), policy, privacy, secagg, noise, selection, beta)

    def consortium_terms(self) -> AggregationRule:
        """The part of the rule members agree on in their configs; DP parameters are held to the
        ledger's budget instead (``fedledger.protocol.privacy``), and the noise is per round."""
        return replace(self, privacy=None, noise=None)

    def for_round(self, participants: int) -> AggregationRule:
        """The rule as a round's manifest records it: DP rounds name how many updates they include."""
        if self.privacy is None:
            return self
        return replace(self, privacy=replace(self.privacy, participants=max(participants, 1)))

    def distributed_privacy(self) -> RoundPrivacy:
        """The DP parameters of a secure round: Skellam shares every member adds inside its masked input,
        so no central noise and no noise secret; ManifestError for a rule that claims anything else."""
        p = self.privacy
        if p is None:
            raise ManifestError("the rule names no DP parameters")
        if p.mechanism != "skellam" or p.sample_rate != 1.0 or self.noise is not None:
            raise ManifestError(
                "a secure round's noise is the members' Skellam shares over every member (mechanism skellam, "
                f"sample rate 1, no {NOISE_RULE_KEY} secret), the rule says {p.mechanism} at {p.sample_rate:g}"
                + (" with a noise secret" if self.noise is not None else "")
            )
        return p

    def gaussian_privacy(self) -> RoundPrivacy:
        """The DP parameters of a round with the committed-secret Gaussian noise (central DP); ManifestError
        for a rule that cannot add it."""
        p = self.privacy
        if p is None:
            raise ManifestError("the rule names no DP parameters")
        if self.name != DEFAULT_RULE:
            raise ManifestError(f"central DP adds its noise to {DEFAULT_RULE} only, not to {self.name}")
        if p.mechanism != "gaussian" or p.sample_rate != 1.0:
            raise ManifestError(
                "a central-DP round adds Gaussian noise over every member's update "
                f"(mechanism gaussian, sample rate 1), the rule says {p.mechanism} at {p.sample_rate:g}"
            )
        return p

    def aggregation(
        self,
        noise_seed_of: Callable[[], bytes] | None = None,
        before_previous: Mapping[str, torch.Tensor] | None = None,
    ) -> AlignmentAggregation:
        """The strategy; with DP, alignment of clipped updates plus the noise seeded by ``noise_seed_of``
        (called once the updates are in); with server momentum, its step on that result, from
        ``before_previous`` (the global model two rounds back; None in round 0)."""
        if self.secagg is not None:  # masked inputs are summed by secagg_round, never aligned in the clear
            raise ManifestError("a secure-aggregation round is computed by compute_secure_round, not aligned")
        if self.privacy is None:
            return aggregation_for(self.name, server_momentum=self.server_momentum, before_previous=before_previous)
        p = self.gaussian_privacy()
        if noise_seed_of is None:
            raise ManifestError("a round with DP needs its noise secret to aggregate")
        noised = CentralDPAggregation(p.clip, p.noise_multiplier, noise_seed_of)
        return MomentumAfter(noised, self.server_momentum, before_previous) if self.server_momentum else noised

    def expected_map(self, spec: ModelSpec, width_rate: float, round_index: int) -> IndexMap | None:
        """The index map the rule's selection gives a member of ``width_rate`` in ``round_index``
        (what the node's training cuts out); None when the rule names no selection."""
        if self.selection is None:
            return None
        return make_index_map(spec, width_rate, self.selection, round_index)


class EntryExcluded(FedLedgerError):
    """One entry failed a check; ``code`` is the manifest's reason code."""

    def __init__(self, code: ReasonCode, reason: str) -> None:
        self.code = code
        self.reason = reason[:MAX_REASON_CHARS]
        super().__init__(f"{code.value}: {self.reason}")


@dataclass
class RoundComputation:
    """What the pipeline decided and produced for one round."""

    included: list[LedgerUpdate]
    excluded: list[Exclusion]
    state: dict[str, torch.Tensor]
    secagg: dict[str, Any] | None = None  # the secure round's published messages (manifest ``secagg``)

    def manifest(
        self,
        ledger: tuple[int, str],
        round_index: int,
        base_digest: bytes,
        global_cid: str,
        global_digest: bytes,
        rule: AggregationRule,
    ) -> RoundManifest:
        """The round's manifest on ledger (chain id, contract) for the stored global model."""
        chain_id, contract = ledger
        return RoundManifest(
            chain_id=chain_id,
            contract=contract.lower(),
            round=round_index,
            base_digest=base_digest,
            global_cid=global_cid,
            global_digest=global_digest,
            rule=rule.for_round(len(self.included)).to_dict(),
            included=tuple(
                Inclusion(u.address, u.entry.cid, u.entry.digest, u.entry.leaf(u.signature_der)) for u in self.included
            ),
            excluded=tuple(self.excluded),
            secagg=self.secagg,
        )


def check_signature(mpk: SignMasterPublicKey, update: LedgerUpdate, verified: VerifiedSignatures | None = None) -> None:
    """The entry's SM9 signature under its submitter's identity; ``verified`` skips one already checked."""
    if update.sm9_identity is None:
        raise EntryExcluded(ReasonCode.NOT_MEMBER, f"{update.entry.institution} holds no SM9 identity on the ledger")
    try:
        signature = Signature.from_der(update.signature_der)
    except SM9Error as exc:
        raise EntryExcluded(ReasonCode.SIGNATURE_INVALID, f"malformed SM9 signature: {exc}") from None
    message = update.entry.message()
    if verified is not None:
        good = verified.verify(mpk, update.sm9_identity, message, update.signature_der)
    else:
        good = verify(mpk, update.sm9_identity, message, signature)
    if not good:
        raise EntryExcluded(ReasonCode.SIGNATURE_INVALID, f"SM9 signature of {update.sm9_identity} is invalid")


def _check_readers(vault: ModelVault, update: LedgerUpdate, readers: Sequence[Recipient]) -> None:
    """Every reader of the round must be able to open the update, or the parties that cannot would
    compute another round than those that can, and one member could stall the round (its file's
    public header decides, so every party agrees without opening it)."""
    if not readers:
        return
    try:
        named = sealed_to(vault.store, update.entry.cid)
    except (StoreError, EnvelopeError, ValueError) as exc:
        raise EntryExcluded(
            ReasonCode.CONTENT_UNAVAILABLE, f"content {update.entry.cid!r} unavailable: {exc}"
        ) from None
    missing = [r.identity.decode("utf-8", "replace") for r in readers if (r.identity, r.key_id) not in named]
    if missing:
        raise EntryExcluded(
            ReasonCode.CONTENT_UNAVAILABLE, f"not sealed to every reader of the round (missing: {', '.join(missing)})"
        )


def _fetch(vault: ModelVault, update: LedgerUpdate, workdir: Path) -> Path:
    """Fetch the sealed update by its ciphertext CID, open it with this party's reader keys and check the
    plaintext's SM3 against the ledger entry's digest."""
    entry = update.entry
    path = workdir / f"update-r{entry.round}-{update.address}.safetensors"
    path.unlink(missing_ok=True)  # fetched anew: the entry's CID itself must be available
    try:
        return vault.get(entry.cid, entry.digest, path)
    except ModelDigestMismatch:
        path.unlink(missing_ok=True)
        raise EntryExcluded(
            ReasonCode.DIGEST_MISMATCH, "the file's SM3 differs from the ledger entry's digest"
        ) from None
    except (SealedModelError, EnvelopeError) as exc:
        path.unlink(missing_ok=True)
        raise EntryExcluded(ReasonCode.CONTENT_UNAVAILABLE, f"content {entry.cid!r} cannot be opened: {exc}") from None
    except (StoreError, ValueError) as exc:
        path.unlink(missing_ok=True)
        raise EntryExcluded(ReasonCode.CONTENT_UNAVAILABLE, f"content {entry.cid!r} unavailable: {exc}") from None


def _load(path: Path, update: LedgerUpdate) -> ClientUpdate:
    entry = update.entry
    try:
        loaded = load_client_update(path)
    except ModelFileError as exc:
        raise EntryExcluded(ReasonCode.MALFORMED_FILE, str(exc).replace(str(path), "update file")) from None
    if loaded.institution.lower() != update.address:
        # A member re-submitting another's file as its own would count that update twice.
        raise EntryExcluded(
            ReasonCode.FIELDS_MISMATCH,
            f"the file names {loaded.institution.lower()} as its submitter, not {update.address}: "
            "a copy of another member's update",
        )
    if loaded.index_map.digest() != entry.mapping_digest:
        raise EntryExcluded(ReasonCode.FIELDS_MISMATCH, "the file's index map differs from the ledger's mapping digest")
    try:
        ppm = width_to_ppm(loaded.width_rate)
    except ValueError:
        ppm = -1
    if ppm != entry.width_ppm:
        raise EntryExcluded(
            ReasonCode.FIELDS_MISMATCH, f"the file's width {ppm} ppm differs from the ledger's {entry.width_ppm}"
        )
    if loaded.num_samples != entry.num_samples:
        raise EntryExcluded(
            ReasonCode.FIELDS_MISMATCH,
            f"the file claims {loaded.num_samples} samples, the ledger entry {entry.num_samples}",
        )
    # The ledger, not the file, names the submitter and its weight.
    loaded.institution = entry.institution
    loaded.num_samples = entry.num_samples
    return loaded


def _validate(
    loaded: ClientUpdate,
    spec: ModelSpec,
    base_state: Mapping[str, torch.Tensor],
    base_digest: bytes,
    policy: ValidationPolicy,
) -> ClientUpdate:
    if loaded.base_digest != base_digest:
        raise EntryExcluded(ReasonCode.WRONG_BASE, "trained from another base model than the round's")
    for name, tensor in loaded.state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise EntryExcluded(ReasonCode.NON_FINITE, f"tensor {name} contains NaN or Inf")
    try:
        validate_update(loaded, spec, base_state, None, ValidationPolicy(None, policy.norm_policy))
    except UpdateRejected as exc:
        raise EntryExcluded(ReasonCode.WRONG_SHAPE, str(exc)) from None
    if policy.max_norm is None:
        return loaded
    try:
        return validate_update(loaded, spec, base_state, None, policy)
    except UpdateRejected as exc:
        raise EntryExcluded(ReasonCode.NORM_BOUND, str(exc)) from None


def _check_window(update: ClientUpdate, spec: ModelSpec, rule: AggregationRule, round_index: int) -> None:
    """The update's index map is the one the consortium's selection gives its width in this round,
    so no member picks which units it trains (e.g. always the same ones, to steer them)."""
    try:
        expected = rule.expected_map(spec, update.width_rate, round_index)
    except ValueError as exc:  # untrusted width: a reason, never a crashed round
        raise EntryExcluded(ReasonCode.WRONG_WINDOW, f"no window for this width: {exc}") from None
    if expected is not None and expected.digest() != update.index_map.digest():
        raise EntryExcluded(
            ReasonCode.WRONG_WINDOW,
            f"the index map is not the {rule.selection} window of width {update.width_rate:g} in round {round_index}",
        )


def needs_history(rule: AggregationRule, round_index: int) -> bool:
    """Whether the round's aggregation needs the global model two rounds back (server momentum past round 0)."""
    return bool(rule.server_momentum) and round_index > 0


def compute_round(
    vault: ModelVault,
    mpk: SignMasterPublicKey,
    spec: ModelSpec,
    base_state: Mapping[str, torch.Tensor],
    base_digest: bytes,
    updates: Iterable[LedgerUpdate],
    rule: AggregationRule,
    workdir: Path,
    readers: Sequence[Recipient] = (),
    *,
    noise_secret: bytes | None = None,
    verified: VerifiedSignatures | None = None,
    before_previous: Mapping[str, torch.Tensor] | None = None,
) -> RoundComputation:
    """Check every entry (in address order) and aggregate the accepted ones into the new state.

    ``readers``: who every sealed update must name (``ModelVault.round_readers``); empty: no such check.
    A rule with DP needs ``noise_secret``, the round's committed secret: the noise seed binds it to
    the Merkle root of the included entries (``fedledger.protocol.noise_seed``). A rule with server
    momentum needs ``before_previous`` past round 0 (``fedledger.protocol.momentum_history``).
    ``verified``: the signatures this party already checked (``fedledger.protocol.signature_cache``).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(updates, key=lambda u: u.address)
    if ordered and needs_history(rule, ordered[0].entry.round) and before_previous is None:
        raise ManifestError("a round with server momentum after round 0 needs the global model two rounds back")
    included: list[LedgerUpdate] = []
    excluded: list[Exclusion] = []

    def accepted() -> Iterator[ClientUpdate]:
        for update in ordered:  # one file opened at a time; the aggregation holds at most BATCH_BYTES
            try:
                check_signature(mpk, update, verified)
                _check_readers(vault, update, readers)
                path = _fetch(vault, update, workdir)
                try:
                    checked = _validate(_load(path, update), spec, base_state, base_digest, rule.policy)
                    _check_window(checked, spec, rule, update.entry.round)
                except EntryExcluded:
                    path.unlink(missing_ok=True)
                    raise
            except EntryExcluded as exc:
                log.warning("round %d: %s left out: %s", update.entry.round, update.entry.institution, exc)
                excluded.append(Exclusion(update.address, update.entry.cid, exc.code, exc.reason))
                continue
            included.append(update)
            yield checked

    strategy = rule.aggregation(noise_seed_source(rule, noise_secret, included), before_previous)
    state = strategy.aggregate(base_state, accepted())
    return RoundComputation(included, excluded, state)


def noise_seed_source(
    rule: AggregationRule, secret: bytes | None, included: list[LedgerUpdate]
) -> Callable[[], bytes] | None:
    """The noise seed of a DP round, computed once ``included`` is complete (None without DP or secret)."""
    if rule.noise is None or secret is None:
        return None
    commitment = rule.noise.commitment

    def seed() -> bytes:
        first = included[0].entry
        root = merkle_root([u.entry.leaf(u.signature_der) for u in included])
        return noise_seed(secret, commitment, first.chain_id, first.contract, first.round, root)

    return seed
