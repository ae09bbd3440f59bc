"""The global model two posted rounds back, G(t-2), which server momentum needs, as the ledger names it.

Why from the ledger: the aggregator and every co-signer must use the same G(t-2), and neither
trusts the other's copy. The contract opens round t only from round t-1's posted global model
(``BaseModelMismatch`` otherwise), so rounds are never skipped and the ledger's last two global
models before round t are exactly the bases of rounds t and t-1 (the seeded initial model, the
base of round 0, counts as one). A round that fails (no valid update, too few signers) stays open
and posts nothing: its retry uses the same two models. Round 0 has no G(t-2): no momentum step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from fedledger.envelope import EnvelopeError
from fedledger.fl import ModelFileError, load_global
from fedledger.protocol.errors import ProtocolError, SealedModelError
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.round_check import AggregationRule, needs_history
from fedledger.store import StoreError


class MomentumHistoryError(ProtocolError):
    """The model two rounds back cannot be had from the ledger and the store."""


class OpenedRound(Protocol):
    @property
    def base_cid(self) -> str: ...

    @property
    def base_digest(self) -> bytes: ...


class RoundsOpened(Protocol):
    """What this needs of a ledger client (``LedgerClient`` fits)."""

    def rounds_opened(self, *, round: int | None = None) -> Sequence[OpenedRound]: ...


def before_previous_model(
    ledger: RoundsOpened, vault: ModelVault, round_index: int, workdir: Path, rule: AggregationRule | None = None
) -> dict[str, torch.Tensor] | None:
    """G(t-2) for round ``round_index``: the model round t-1 opened with, fetched by the ledger's CID
    and held to its digest; None for round 0, and when ``rule`` (if given) has no server momentum."""
    if round_index == 0 or (rule is not None and not needs_history(rule, round_index)):
        return None
    opened = ledger.rounds_opened(round=round_index - 1)
    if not opened:
        raise MomentumHistoryError(f"round {round_index - 1} was never opened on the ledger")
    base = opened[0]
    path = workdir / f"before-previous-r{round_index}.safetensors"
    try:
        state, _ = load_global(vault.get(base.base_cid, base.base_digest, path))
    except (SealedModelError, EnvelopeError, StoreError, ModelFileError, ValueError) as exc:
        raise MomentumHistoryError(f"the model two rounds back ({base.base_cid}) cannot be read: {exc}") from None
    return state
