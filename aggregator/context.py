"""Turning the aggregator's config and key file into a running :class:`AggregatorContext`.

Every setting keeps its config name on the context, so a value in ``aggregator.toml`` can be
followed by name to the code it governs. The Ethereum key is decrypted here and held only in memory.
"""

from __future__ import annotations

from pathlib import Path

from aggregator.config import AggregatorConfig
from aggregator.driver import AggregatorContext
from aggregator.http_api import SessionBoard
from fedledger.chain.keyfile import load_eth_key
from fedledger.fl import ModelSpec, ValidationPolicy
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.readers import load_reader_keys
from fedledger.sm9 import SignMasterPublicKey
from fedledger.sm9.threshold import ThresholdPublic
from fedledger.store import open_store


def build_context(config: AggregatorConfig, base: Path, password: str, board: SessionBoard) -> AggregatorContext:
    """Open keys, clients and public consortium data for the aggregator described by ``config``."""
    state_dir = base / config.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    return AggregatorContext(
        account=load_eth_key(base / config.eth_key_file, password),
        ledger=config.ledger_client(),
        store=open_store(config.store),
        spec=ModelSpec.from_dict(config.model),
        master_public_key=SignMasterPublicKey.load(base / config.master_public_key_file),
        threshold_public=ThresholdPublic.load(base / config.threshold_public_file),
        consortium=Consortium.load(base / config.consortium_file),
        state_dir=state_dir,
        board=board,
        init_seed=config.init_seed,
        min_updates=config.min_updates,
        round_deadline_seconds=config.round_deadline_seconds,
        session_timeout_seconds=config.session_timeout_seconds,
        signing_grace_seconds=config.signing_grace_seconds,
        partial_timeout_seconds=config.partial_timeout_seconds,
        policy=ValidationPolicy(config.max_update_norm, config.norm_policy),
        aggregation_rule=config.aggregation_rule,
        selection=config.selection,
        server_momentum=config.effective_server_momentum(),
        poll_interval=config.poll_interval,
        reader_keys=load_reader_keys(base / config.reader_keys_file, password),
        dp_epsilon=config.dp_epsilon,
        dp_delta=config.dp_delta,
        dp_clip=config.dp_clip,
        secure_aggregation=config.secure_aggregation,
        secagg_phase_seconds=config.secagg_phase_seconds,
    )
