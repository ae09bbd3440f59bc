"""The aggregator's learning work for one round: checked updates in, stored global model out.

Each submitted entry is checked before its update is used: the content matches the CID (the
store verifies every block), opens with the aggregator's reader keys and has the ledger's SM3
digest, the submitter's SM9 signature over the entry is valid, and the FL validation rules pass
(shapes for the announced width, dtype, NaN/Inf, norm bound, base model). Rejected entries
are reported with the reason and left out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fedledger.envelope import EnvelopeError, Recipient
from fedledger.fl import (
    AlignmentAggregation,
    ClientUpdate,
    ModelFileError,
    ModelSpec,
    UpdateRejected,
    UpdateValidator,
    ValidationPolicy,
    load_client_update,
    save_global,
)
from fedledger.protocol import UpdateEntry, ppm_to_width
from fedledger.protocol.errors import ModelDigestMismatch, SealedModelError
from fedledger.protocol.model_files import ModelVault
from fedledger.sm9 import Signature, SignMasterPublicKey, SM9Error, verify
from fedledger.store import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmittedUpdate:
    """An ``UpdateSubmitted`` event with the submitter's SM9 identity."""

    entry: UpdateEntry
    signature_der: bytes
    sm9_identity: str


@dataclass
class RoundOutcome:
    included: list[SubmittedUpdate] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # institution address -> reason
    global_path: Path | None = None
    global_digest: bytes = b""
    global_cid: str = ""


def check_submission(
    vault: ModelVault,
    mpk: SignMasterPublicKey,
    submitted: SubmittedUpdate,
    workdir: Path,
) -> Path:
    """Fetch and open one update and check CID, plaintext digest and SM9 signature; returns the local file."""
    entry = submitted.entry
    try:
        signature = Signature.from_der(submitted.signature_der)
    except SM9Error as exc:
        raise UpdateRejected(entry.institution, "*", f"malformed SM9 signature: {exc}") from None
    if not verify(mpk, submitted.sm9_identity, entry.message(), signature):
        raise UpdateRejected(entry.institution, "*", f"SM9 signature of {submitted.sm9_identity} is invalid")
    path = workdir / f"update-r{entry.round}-{entry.institution.lower()}.safetensors"
    path.unlink(missing_ok=True)  # fetched anew: the entry's CID itself must be available
    try:
        return vault.get(entry.cid, entry.digest, path)
    except StoreError as exc:
        raise UpdateRejected(entry.institution, "*", f"content {entry.cid} unavailable: {exc}") from None
    except ModelDigestMismatch:
        raise UpdateRejected(entry.institution, "*", "file digest differs from the ledger entry") from None
    except (SealedModelError, EnvelopeError) as exc:
        raise UpdateRejected(entry.institution, "*", f"content {entry.cid} cannot be opened: {exc}") from None


def _load_checked(path: Path, submitted: SubmittedUpdate) -> ClientUpdate:
    entry = submitted.entry
    try:
        update = load_client_update(path)
    except ModelFileError as exc:
        raise UpdateRejected(entry.institution, "*", str(exc)) from None
    if update.index_map.digest() != entry.mapping_digest:
        raise UpdateRejected(entry.institution, "*", "index map differs from the ledger's mapping digest")
    if abs(update.width_rate - ppm_to_width(entry.width_ppm)) > 1e-6:
        raise UpdateRejected(entry.institution, "*", "width rate differs from the ledger entry")
    if update.num_samples != entry.num_samples:
        raise UpdateRejected(entry.institution, "*", "sample count differs from the ledger entry")
    # The ledger, not the file, names who submitted: weight and report by address.
    update.institution = entry.institution
    return update


def aggregate_round(
    vault: ModelVault,
    readers: list[Recipient],
    mpk: SignMasterPublicKey,
    spec: ModelSpec,
    base_state: dict[str, torch.Tensor],
    base_digest: bytes,
    submissions: list[SubmittedUpdate],
    round_index: int,
    workdir: Path,
    policy: ValidationPolicy | None = None,
) -> RoundOutcome:
    """Check every submission, align the accepted ones into the new global model and store it sealed to ``readers``."""
    workdir.mkdir(parents=True, exist_ok=True)
    outcome = RoundOutcome()
    checked: list[tuple[SubmittedUpdate, Path]] = []
    for submitted in sorted(submissions, key=lambda s: s.entry.institution.lower()):
        try:
            checked.append((submitted, check_submission(vault, mpk, submitted, workdir)))
        except UpdateRejected as exc:
            log.warning("round %d: %s", round_index, exc)
            outcome.rejected[submitted.entry.institution] = exc.reason
    validator = UpdateValidator(spec, base_state, base_digest, policy)

    def stream() -> Iterator[ClientUpdate]:
        # One update in memory at a time; a rejected one is reported and skipped.
        for submitted, path in checked:
            try:
                update = validator(_load_checked(path, submitted))
            except UpdateRejected as exc:
                log.warning("round %d: %s", round_index, exc)
                outcome.rejected[submitted.entry.institution] = exc.reason
                continue
            outcome.included.append(submitted)
            yield update

    new_state = AlignmentAggregation().aggregate(base_state, stream())
    path = workdir / f"global-r{round_index}.safetensors"
    outcome.global_digest = save_global(path, new_state, spec, round_index + 1)
    outcome.global_path = path
    outcome.global_cid, _ = vault.put(path, readers)
    return outcome
