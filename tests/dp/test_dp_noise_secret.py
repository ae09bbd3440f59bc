"""The central-DP noise secret between the roles, on a real store with real sealing keys: the
aggregator keeps one secret per round (0600, reused after a restart) and seals it to the readers;
a node opens it only when the manifest names the commitment the node kept before submitting."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from aggregator.noise_secret import publish_secret, round_noise_secret, secret_path
from fedledger.envelope.recipients import RecipientKeys
from fedledger.protocol.model_files import ModelVault
from fedledger.protocol.noise_seed import NoiseSeedError, PublishedNoise, noise_commitment
from fedledger.sm9.encryption_keys import EncryptMasterKey, extract_encrypt_key
from fedledger.store import LocalStore
from node.noise_commitment import COMMITMENT_FILE, NoiseCommitmentError, open_noise_secret

CONTRACT = "0x" + "22" * 20
ENC_MASTER = EncryptMasterKey.generate()
MEMBER = RecipientKeys.generate(extract_encrypt_key(ENC_MASTER, "member"))
OUTSIDER = RecipientKeys.generate(extract_encrypt_key(ENC_MASTER, "outsider"))


def test_the_aggregator_keeps_one_secret_per_round_private_and_reuses_it_after_a_restart(tmp_path: Path) -> None:
    first = round_noise_secret(tmp_path, 4)
    assert round_noise_secret(tmp_path, 4) == first != round_noise_secret(tmp_path, 5)
    assert stat.S_IMODE(secret_path(tmp_path, 4).stat().st_mode) == 0o600
    secret_path(tmp_path, 5).write_bytes(b"short")
    with pytest.raises(NoiseSeedError, match="damaged"):
        round_noise_secret(tmp_path, 5)


def _published(tmp_path: Path, reader: RecipientKeys) -> tuple[PublishedNoise, bytes, ModelVault]:
    store = LocalStore(tmp_path / "store", durable=False)
    aggregator_vault = ModelVault(store, ENC_MASTER.public_key, None)
    noise, secret = publish_secret(aggregator_vault, [reader.public], tmp_path / "agg", 31337, CONTRACT, 2)
    return noise, secret, ModelVault(store, ENC_MASTER.public_key, MEMBER)


def _keep(state_dir: Path, commitment: bytes) -> None:
    folder = state_dir / "round-2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMMITMENT_FILE).write_text(json.dumps({"round": 2, "commitment": "0x" + commitment.hex()}))


def test_a_node_opens_the_sealed_secret_that_opens_the_commitment_it_kept(tmp_path: Path) -> None:
    noise, secret, vault = _published(tmp_path, MEMBER)
    assert noise.commitment == noise_commitment(secret, 31337, CONTRACT, 2)
    _keep(tmp_path / "node", noise.commitment)
    assert open_noise_secret(vault, tmp_path / "node", 2, noise) == secret


def test_a_node_refuses_a_manifest_whose_commitment_is_not_the_one_it_kept(tmp_path: Path) -> None:
    noise, _, vault = _published(tmp_path, MEMBER)
    _keep(tmp_path / "node", noise_commitment(b"\x07" * 32, 31337, CONTRACT, 2))  # what the aggregator showed
    with pytest.raises(NoiseCommitmentError, match="not the one the aggregator showed before this node submitted"):
        open_noise_secret(vault, tmp_path / "node", 2, noise)


def test_a_secret_sealed_to_others_cannot_be_opened(tmp_path: Path) -> None:
    noise, _, vault = _published(tmp_path, OUTSIDER)
    with pytest.raises(NoiseCommitmentError, match="cannot be opened"):
        open_noise_secret(vault, tmp_path / "node", 2, noise)
