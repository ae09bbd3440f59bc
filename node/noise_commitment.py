"""A node holds the aggregator to the central-DP noise it committed to (docs/secagg.md, "Central DP:
where the noise seed comes from"): before it submits to a round with DP it keeps the commitment the
aggregator shows (``GET /rounds/{r}/noise-commitment``), and it recomputes the noised model only
with a secret that opens that very commitment, fetched sealed from the store with its reader keys.
So the aggregator cannot pick its noise after it has seen the updates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import httpx

from fedledger.chain.client import LedgerClient
from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_text
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.noise_seed import SECRET_BYTES, NoiseSeedError, PublishedNoise, parse_hex32
from fedledger.protocol.privacy import ledger_budget

COMMITMENT_FILE = "noise-commitment.json"
SECRET_FILE = "noise-secret"  # noqa: S105 - a file name, not a secret


class NoiseCommitmentError(FedLedgerError):
    """The round's noise commitment is missing or malformed, or its secret does not match the one kept."""


class DPNode(Protocol):
    """What this module reads of a node (``node.participant.NodeContext`` fits)."""

    @property
    def ledger(self) -> LedgerClient: ...

    @property
    def aggregator_url(self) -> str: ...

    @property
    def state_dir(self) -> Path: ...


def _kept(state_dir: Path, round_index: int) -> Path:
    return state_dir / f"round-{round_index}" / COMMITMENT_FILE


def keep_noise_commitment(node: DPNode, http: httpx.Client, round_index: int) -> None:
    """On a ledger with a privacy budget (every round has DP), fetch and keep the round's commitment
    before submitting; NoiseCommitmentError (the node retries) while the aggregator shows none."""
    path = _kept(node.state_dir, round_index)
    setting = node.ledger.privacy_budget()
    if path.exists() or ledger_budget(setting.epsilon, setting.delta) is None:
        return
    response = http.get(f"{node.aggregator_url}/rounds/{round_index}/noise-commitment")
    if response.status_code != 200:
        raise NoiseCommitmentError(
            f"round {round_index}: the aggregator shows no noise commitment (HTTP {response.status_code}); "
            "not submitting to a DP round without one"
        )
    try:
        commitment = parse_hex32(response.json()["commitment"], "commitment")
    except (ValueError, KeyError, TypeError, NoiseSeedError):
        raise NoiseCommitmentError(f"round {round_index}: the aggregator's noise commitment is malformed") from None
    atomic_write_text(path, json.dumps({"round": round_index, "commitment": "0x" + commitment.hex()}))


def open_noise_secret(vault: ModelVault, state_dir: Path, round_index: int, noise: PublishedNoise) -> bytes:
    """The round's noise secret from the manifest's sealed copy, after checking the manifest names the
    commitment this node kept before submitting (a node that kept none, e.g. it did not submit, takes
    the manifest's: the secret must still open it when the noise seed is derived)."""
    path = _kept(state_dir, round_index)
    if path.exists():
        kept = json.loads(path.read_text(encoding="utf-8"))["commitment"]
        if kept != "0x" + noise.commitment.hex():
            raise NoiseCommitmentError(
                f"round {round_index}: the manifest's noise commitment is not the one the aggregator showed "
                "before this node submitted"
            )
    try:
        opened = vault.get(noise.secret_cid, noise.secret_digest, path.parent / SECRET_FILE)
    except (FedLedgerError, ValueError, OSError) as exc:
        raise NoiseCommitmentError(f"round {round_index}: the noise secret cannot be opened: {exc}") from None
    secret = opened.read_bytes()
    if len(secret) != SECRET_BYTES:
        raise NoiseCommitmentError(f"round {round_index}: the sealed noise secret is not {SECRET_BYTES} bytes")
    return secret
