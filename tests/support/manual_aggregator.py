"""Playing the aggregator's part by hand, honestly or not, to put a record before a node's checks.

Real parts throughout: the round's entries come from the ledger, the global model (sealed to the
readers, through a party's vault) and the manifest (public, plaintext) go into the real store, and
the view is what the aggregator's signing session would show a node.
A dishonest aggregator is one that publishes other decisions or another model than the shared
pipeline produces; ``publish`` takes whatever it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from eth_account.signers.local import LocalAccount

from fedledger.chain.client import LedgerClient
from fedledger.fl import ModelSpec, load_global, save_global
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.manifest import Exclusion, RoundManifest
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.momentum_history import before_previous_model
from fedledger.protocol.readers import readers_now
from fedledger.protocol.round_check import (
    AggregationRule,
    LedgerUpdate,
    RoundComputation,
    compute_round,
    ledger_updates,
)
from fedledger.sm9 import SignMasterPublicKey
from tests.support.audit_scenario import store_manifest


class Party(Protocol):
    """A member whose vault reads and seals model files (``node.participant.NodeContext`` fits)."""

    @property
    def vault(self) -> ModelVault: ...

    @property
    def consortium(self) -> Consortium: ...

    @property
    def rule(self) -> AggregationRule: ...


def open_next_round(ledger: LedgerClient, aggregator: LocalAccount) -> int:
    """The open round, opening the next one from the last posted model if none is open."""
    state = ledger.round_state()
    if not state.open:
        last = ledger.global_models_posted(round=state.round)[0]
        ledger.open_round(aggregator, state.round + 1, last.cid, last.digest)
    return ledger.round_state().round


def round_updates(ledger: LedgerClient, round_index: int) -> list[LedgerUpdate]:
    identities = {i.address.lower(): i.sm9_id for i in ledger.institutions()}
    return ledger_updates(ledger.chain_id, ledger.address, ledger.updates_submitted(round=round_index), identities)


def round_base(
    party: Party, ledger: LedgerClient, round_index: int, workdir: Path
) -> tuple[dict[str, torch.Tensor], ModelSpec, bytes]:
    """(state, spec, digest) of the model round ``round_index`` opened with."""
    opened = ledger.rounds_opened(round=round_index)[0]
    path = workdir / f"base-{round_index}.safetensors"
    party.vault.get(opened.base_cid, opened.base_digest, path)
    state, meta = load_global(path)
    assert meta.spec is not None
    return state, meta.spec, opened.base_digest


def publish(
    party: Party,
    ledger: LedgerClient,
    round_index: int,
    base_digest: bytes,
    spec: ModelSpec,
    state: Mapping[str, torch.Tensor],
    included: list[LedgerUpdate],
    excluded: list[Exclusion],
    workdir: Path,
    rule: AggregationRule | None = None,
) -> tuple[dict[str, Any], RoundManifest]:
    """Store ``state`` as the global model and a manifest with these decisions; the session view."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"global-{round_index}-{len(list(workdir.iterdir()))}.safetensors"
    global_digest = save_global(path, state, spec, round_index + 1)
    global_cid, _ = party.vault.put(path, readers_now(ledger, party.consortium))
    computation = RoundComputation(
        sorted(included, key=lambda u: u.address), sorted(excluded, key=lambda e: e.institution), dict(state)
    )
    ledger_id = (ledger.chain_id, ledger.address)
    rule = rule or party.rule
    manifest = computation.manifest(ledger_id, round_index, base_digest, global_cid, global_digest, rule)
    record = store_manifest(party.vault.store, manifest)
    return {"record": record.to_dict(), "included": [r.institution for r in manifest.included]}, manifest


def honest_view(
    party: Party,
    mpk: SignMasterPublicKey,
    ledger: LedgerClient,
    round_index: int,
    workdir: Path,
    rule: AggregationRule | None = None,
    noise_secret: bytes | None = None,
) -> tuple[dict[str, Any], RoundManifest]:
    """What an honest aggregator would put before the nodes for the round as the ledger has it now
    (``noise_secret``: the committed secret of a round whose rule has DP); ``rule`` defaults to the
    party's, the consortium's terms."""
    rule = rule or party.rule
    workdir.mkdir(parents=True, exist_ok=True)
    state, spec, base_digest = round_base(party, ledger, round_index, workdir)
    computation = compute_round(
        party.vault,
        mpk,
        spec,
        state,
        base_digest,
        round_updates(ledger, round_index),
        rule,
        workdir / "check",
        noise_secret=noise_secret,
        before_previous=before_previous_model(ledger, party.vault, round_index, workdir, rule),
    )
    return publish(
        party,
        ledger,
        round_index,
        base_digest,
        spec,
        computation.state,
        computation.included,
        computation.excluded,
        workdir,
        rule,
    )
