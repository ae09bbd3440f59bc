"""The node's learning work for one round: verified base model in, signed-ready update file out.

Knows the store and the FL core, not the chain: the caller passes the base model's CID and the
digest the ledger recorded, and gets back the update's file, digest and mapping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from fedledger.digests import sm3_file
from fedledger.dp.errors import DPParameterError
from fedledger.dp.local import LocalDPRound
from fedledger.envelope import EnvelopeError, Recipient
from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_text
from fedledger.fl import (
    Dataset,
    ModelSpec,
    TrainConfig,
    UpdateMetadata,
    extract_submodel,
    global_digest,
    load_global,
    save_update,
    train_local,
)
from fedledger.protocol.errors import SealedModelError
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.round_check import AggregationRule, LedgerUpdate, RoundComputation, compute_round
from fedledger.protocol.signature_cache import VerifiedSignatures
from fedledger.sm9 import SignMasterPublicKey


class UnusableGlobalModel(FedLedgerError):
    """The global model fetched for a round differs from the ledger's digest or cannot be trained from.

    Not ``fedledger.chain.errors.UnusableGlobalModel``: that one is the contract refusing a round
    opened on the wrong base; this one is the node refusing the bytes the store handed it.
    """


@dataclass(frozen=True)
class TrainedUpdate:
    """A trained update file and what its ledger entry will say (and its local DP-SGD, if any)."""

    path: Path
    digest: bytes
    mapping_digest: bytes
    num_samples: int
    width_rate: float
    loss: float
    local_dp: LocalDPRound | None = None

    def save_summary(self, path: Path, base_digest: bytes) -> None:
        """Remember the trained update, so `submit` after `train` (or a restart) reuses it."""
        summary = {
            "digest": self.digest.hex(),
            "mapping_digest": self.mapping_digest.hex(),
            "num_samples": self.num_samples,
            "width_rate": self.width_rate,
            "loss": self.loss,
            "base_digest": base_digest.hex(),
            "local_dp": self.local_dp.statement() if self.local_dp else None,
        }
        atomic_write_text(path, json.dumps(summary))

    @classmethod
    def load_summary(cls, summary: Path, update: Path, base_digest: bytes) -> TrainedUpdate | None:
        """The update trained earlier for this base, if its file is intact; None otherwise."""
        try:
            data = json.loads(summary.read_text(encoding="utf-8"))
            if bytes.fromhex(data["base_digest"]) != base_digest or sm3_file(update) != bytes.fromhex(data["digest"]):
                return None
            return cls(
                update,
                bytes.fromhex(data["digest"]),
                bytes.fromhex(data["mapping_digest"]),
                int(data["num_samples"]),
                float(data["width_rate"]),
                float(data["loss"]),
                LocalDPRound.from_statement(data["local_dp"]) if data.get("local_dp") else None,
            )
        except (OSError, ValueError, KeyError, json.JSONDecodeError, DPParameterError):
            return None


def fetch_verified_model(vault: ModelVault, cid: str, expected_digest: bytes, dest: Path) -> Path:
    """Fetch sealed ``cid`` to ``dest``, open it with this node's keys and check its SM3 against the ledger.

    A file already at ``dest`` with the ledger's digest is that content: it is not fetched again.
    """
    try:
        return vault.get(cid, expected_digest, dest)
    except (SealedModelError, EnvelopeError) as exc:
        raise UnusableGlobalModel(str(exc)) from None


def train_update(
    base_path: Path,
    base_digest: bytes,
    institution: str,
    round_index: int,
    width_rate: float,
    selection: str,
    data: Dataset,
    train: TrainConfig,
    out: Path,
    local_dp: LocalDPRound | None = None,
) -> tuple[TrainedUpdate, ModelSpec]:
    """Cut the sub-model out of the base, train it locally (by DP-SGD with ``local_dp``'s noise
    multiplier and clip) and write the update file."""
    state, meta = load_global(base_path)
    if meta.spec is None:
        raise UnusableGlobalModel(f"{base_path}: global model carries no model spec")
    sub_state, index_map = extract_submodel(state, meta.spec, width_rate, selection, round_index)
    if local_dp is not None:
        train = replace(train, dp_noise_multiplier=local_dp.noise_multiplier, dp_max_grad_norm=local_dp.clip)
    new_state, num_samples, metrics = train_local(meta.spec, sub_state, width_rate, data, train)
    if local_dp is not None and (metrics["sample_rate"], metrics["steps"]) != (local_dp.sample_rate, local_dp.steps):
        raise DPParameterError(  # the accounted round must be the trained one
            f"DP-SGD ran at q={metrics['sample_rate']}, {metrics['steps']:g} steps; the budget counted "
            f"q={local_dp.sample_rate}, {local_dp.steps} steps"
        )
    metadata = UpdateMetadata(
        institution=institution,
        round_index=round_index,
        num_samples=num_samples,
        base_digest=base_digest,
        index_map=index_map,
        selection=selection,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_update(out, new_state, metadata)
    trained = TrainedUpdate(out, digest, index_map.digest(), num_samples, width_rate, metrics["loss"], local_dp)
    return trained, meta.spec


def recompute_round(
    vault: ModelVault,
    mpk: SignMasterPublicKey,
    round_index: int,
    base_path: Path,
    base_digest: bytes,
    updates: list[LedgerUpdate],
    rule: AggregationRule,
    workdir: Path,
    readers: Sequence[Recipient] = (),
    *,
    noise_secret: bytes | None = None,
    verified: VerifiedSignatures | None = None,
    before_previous: Mapping[str, torch.Tensor] | None = None,
) -> tuple[RoundComputation, bytes]:
    """The round as the aggregator must have computed it, and the global model digest that gives.

    Same pipeline, same order (entries sorted by institution address), exact aggregation: the same
    bytes on any CPU, so a node can check the aggregator's manifest and global model bit for bit.
    """
    state, meta = load_global(base_path)
    if meta.spec is None:
        raise UnusableGlobalModel(f"{base_path}: global model carries no model spec")
    computation = compute_round(
        vault,
        mpk,
        meta.spec,
        state,
        base_digest,
        updates,
        rule,
        workdir,
        readers,
        noise_secret=noise_secret,
        verified=verified,
        before_previous=before_previous,
    )
    return computation, global_digest(computation.state, meta.spec, round_index + 1)
