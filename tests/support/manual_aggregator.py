"""Playing the aggregator's part by hand, honestly or not, to put a record before a node's checks.

Real parts throughout: the round's entries come from the ledger, the global model and the manifest
go into the real store, and the view is what the aggregator's signing session would show a node.
A dishonest aggregator is one that publishes other decisions or another model than the shared
pipeline produces; ``publish`` takes whatever it is given.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fedledger.chain.client import LedgerClient
from fedledger.digests import sm3
from fedledger.fl import ModelSpec, load_global, save_global
from fedledger.protocol import RoundRecord
from fedledger.protocol.manifest import Exclusion, Inclusion, RoundManifest
from fedledger.protocol.round_check import AggregationRule, LedgerUpdate, compute_round, ledger_updates
from fedledger.sm9 import SignMasterPublicKey
from fedledger.store import ContentStore


def round_updates(ledger: LedgerClient, round_index: int) -> list[LedgerUpdate]:
    identities = {i.address.lower(): i.sm9_id for i in ledger.institutions()}
    return ledger_updates(ledger.chain_id, ledger.address, ledger.updates_submitted(round=round_index), identities)


def round_base(
    store: ContentStore, ledger: LedgerClient, round_index: int, workdir: Path
) -> tuple[dict[str, torch.Tensor], ModelSpec, bytes]:
    """(state, spec, digest) of the model round ``round_index`` opened with."""
    opened = ledger.rounds_opened(round=round_index)[0]
    path = workdir / f"base-{round_index}.safetensors"
    store.get_to_path(opened.base_cid, path)
    state, meta = load_global(path)
    assert meta.spec is not None
    return state, meta.spec, opened.base_digest


def publish(
    store: ContentStore,
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
    global_cid = store.put(path)
    manifest = RoundManifest(
        chain_id=ledger.chain_id,
        contract=ledger.address.lower(),
        round=round_index,
        base_digest=base_digest,
        global_cid=global_cid,
        global_digest=global_digest,
        rule=(rule or AggregationRule()).to_dict(),
        included=tuple(
            Inclusion(u.address, u.entry.cid, u.entry.digest, u.entry.leaf(u.signature_der))
            for u in sorted(included, key=lambda u: u.address)
        ),
        excluded=tuple(sorted(excluded, key=lambda e: e.institution)),
    )
    data = manifest.to_bytes()
    record = RoundRecord(
        ledger.chain_id,
        ledger.address,
        round_index,
        base_digest,
        global_cid,
        global_digest,
        manifest.updates_root(),
        store.put(data),
        sm3(data),
        manifest.entry_count,
    )
    return {"record": record.to_dict(), "included": [r.institution for r in manifest.included]}, manifest


def honest_view(
    store: ContentStore,
    mpk: SignMasterPublicKey,
    ledger: LedgerClient,
    round_index: int,
    workdir: Path,
    rule: AggregationRule | None = None,
) -> tuple[dict[str, Any], RoundManifest]:
    """What an honest aggregator would put before the nodes for the round as the ledger has it now."""
    rule = rule or AggregationRule()
    workdir.mkdir(parents=True, exist_ok=True)
    state, spec, base_digest = round_base(store, ledger, round_index, workdir)
    computation = compute_round(
        store, mpk, spec, state, base_digest, round_updates(ledger, round_index), rule, workdir / "check"
    )
    return publish(
        store,
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
