"""Turning a node's config and key files into a running :class:`NodeContext`.

Secrets are decrypted here with the node's password and held only in memory; nothing secret is
logged or put in an exception message.
"""

from __future__ import annotations

from pathlib import Path

from fedledger.chain.keyfile import KeyFileError, load_eth_key
from fedledger.fl import Shard, TrainConfig, ValidationPolicy, load_dataset, partition
from fedledger.protocol.consortium import Consortium
from fedledger.protocol.readers import load_reader_keys
from fedledger.protocol.round_check import AggregationRule
from fedledger.protocol.secagg_round import secure_aggregation_rule
from fedledger.sm9 import SignMasterPublicKey, SignPrivateKey
from fedledger.sm9.threshold import KeyShare, Signer, ThresholdPublic
from fedledger.store import open_store
from node.config import NodeConfig
from node.http_client import aggregator_transport
from node.local_budget import LocalDPPolicy
from node.participant import NodeContext


def _rule(config: NodeConfig, members: int) -> AggregationRule:
    """The rule the consortium agreed, as this node's config states it."""
    policy = ValidationPolicy(config.max_update_norm, config.norm_policy)
    if config.secure_aggregation:
        return secure_aggregation_rule(policy, members, config.selection, config.effective_server_momentum())
    return config.aggregation_terms(policy)


def local_dp_policy(config: NodeConfig) -> LocalDPPolicy | None:
    """The hospital's local DP-SGD target, None when it trains without it."""
    if config.local_dp_epsilon is None:
        return None
    return LocalDPPolicy(config.local_dp_epsilon, config.local_dp_delta, config.local_dp_clip, config.local_dp_rounds)


def build_context(
    config: NodeConfig,
    base: Path,
    password: str,
    *,
    insecure_http: bool = False,
    reach_aggregator: bool = True,
    shard: Shard | None = None,
) -> NodeContext:
    """Open keys, clients and local data for the node described by ``config``.

    The aggregator is reached over mutual TLS with the config's TLS files, or over plain HTTP only
    with ``insecure_http``; commands that never call it (``reach_aggregator=False``) need no TLS files.
    ``shard``: data already loaded and checked against the consortium's task (``node start``).
    """

    def at(relative: str) -> Path:
        return (base / relative).resolve()

    account = load_eth_key(at(config.eth_key_file), password)
    try:
        sm9_key = SignPrivateKey.load(at(config.sm9_key_file), password)
        share = KeyShare.load(at(config.share_file), password)
        reader_keys = load_reader_keys(at(config.reader_keys_file), password)
    except Exception as exc:  # the SM9 keystore names the file and the failure, never the secret
        raise KeyFileError(str(exc)) from None
    public = ThresholdPublic.load(at(config.threshold_public_file))
    mpk = SignMasterPublicKey.load(at(config.master_public_key_file))
    consortium = Consortium.load(at(config.consortium_file))
    aggregator_url, aggregator_tls = config.aggregator_url, None
    if reach_aggregator:
        aggregator_url, aggregator_tls = aggregator_transport(
            config, base, password, insecure_http, consortium.chain_id, account.address
        )
    ledger = config.ledger_client()
    data = config.data
    if shard is None:
        shards = partition(load_dataset(data.source), data.partitions, data.scheme, data.alpha, data.seed)
        if not 0 <= data.index < len(shards):
            raise ValueError(f"data.index {data.index} is outside the {len(shards)} partitions")
        shard = shards[data.index]
    state_dir = at(config.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    return NodeContext(
        name=config.name,
        account=account,
        sm9_key=sm9_key,
        sm9_identity=config.sm9_identity,
        signer=Signer(share, public),
        threshold_public=public,
        master_public_key=mpk,
        consortium=consortium,
        ledger=ledger,
        store=open_store(config.store),
        aggregator_url=aggregator_url,
        width_rate=config.width_rate,
        selection=config.selection,
        train_data=shard.train,
        train_config=TrainConfig(
            epochs=config.training.epochs,
            batch_size=config.training.batch_size,
            lr=config.training.learning_rate,
            seed=config.training.seed,
        ),
        state_dir=state_dir,
        verify_aggregation=config.verify_aggregation,
        rule=_rule(config, len(consortium.members)),
        dp_clip=config.dp_clip,
        local_dp=local_dp_policy(config),
        poll_interval=config.poll_interval,
        http_timeout_seconds=config.http_timeout_seconds,
        reader_keys=reader_keys,
        aggregator_tls=aggregator_tls,
    )
