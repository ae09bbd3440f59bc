"""The aggregator's central-DP noise secret for a round (docs/secagg.md, "Central DP: where the
noise seed comes from"): made once, kept 0600 in the round's state folder so a restarted aggregator
reuses it (a new secret would break the commitment the nodes hold), committed to the nodes before
they submit (``GET /rounds/{r}/noise-commitment``), and sealed to the round's readers for the
co-signers, who recompute the noised model with it. It is never logged and never published in clear.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path

from fedledger.envelope import Recipient
from fedledger.fileio import SECRET_MODE, atomic_write_bytes
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.noise_seed import SECRET_BYTES, NoiseSeedError, PublishedNoise, noise_commitment

SECRET_FILE = "noise-secret"  # noqa: S105 - a file name, not a secret


def secret_path(state_dir: Path, round_index: int) -> Path:
    return state_dir / f"round-{round_index}" / SECRET_FILE


def round_noise_secret(state_dir: Path, round_index: int) -> bytes:
    """The round's secret: the kept one, or a fresh 256-bit one written (0600) before first use."""
    path = secret_path(state_dir, round_index)
    if path.exists():
        secret = path.read_bytes()
        if len(secret) != SECRET_BYTES:
            raise NoiseSeedError(f"{path} is damaged (not a {SECRET_BYTES}-byte noise secret)")
        return secret
    secret = secrets.token_bytes(SECRET_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, secret, SECRET_MODE)
    return secret


def round_commitment(state_dir: Path, chain_id: int, contract: str, round_index: int) -> bytes:
    """The commitment to the round's secret, as the nodes fetch it before they submit."""
    return noise_commitment(round_noise_secret(state_dir, round_index), chain_id, contract, round_index)


def publish_secret(
    vault: ModelVault, readers: Sequence[Recipient], state_dir: Path, chain_id: int, contract: str, round_index: int
) -> tuple[PublishedNoise, bytes]:
    """Seal the round's secret to ``readers`` (the members who co-sign); the manifest's ``noise``, and the secret."""
    secret = round_noise_secret(state_dir, round_index)
    cid, digest = vault.put(secret_path(state_dir, round_index), readers)
    commitment = noise_commitment(secret, chain_id, contract, round_index)
    return PublishedNoise(commitment, cid, digest), secret
