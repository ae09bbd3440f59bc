"""The aggregator's configuration file (TOML), validated on load with messages that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from aggregator.request_limits import MAX_BODY_BYTES, RATE_BURST, RATE_PER_SECOND, RequestLimits
from fedledger.chain.settings import LedgerSettings
from fedledger.config_files import ConfigError as AggregatorConfigError
from fedledger.config_files import load_toml, save_toml
from fedledger.protocol.consortium import PublicMaterial
from fedledger.protocol.readers import READER_KEYS_FILE
from fedledger.protocol.rule_settings import RuleSettings
from fedledger.tls.settings import TLSSettings

_MPK, _THRESHOLD, _ROSTER = PublicMaterial.NAMES  # where `init` installs the public files
CONFIG_NAME = "aggregator.toml"
SIGNING_GRACE_SECONDS = 3.0  # past k commitments or approvals, how long the other members may still join
PARTIAL_TIMEOUT_SECONDS = 20.0  # how long a committed signer may take to send its partial signature
__all__ = ["CONFIG_NAME", "AggregatorConfig", "AggregatorConfigError", "load_config", "save_config"]


class AggregatorConfig(LedgerSettings, TLSSettings, RuleSettings):
    """How the aggregator runs rounds; paths are relative to the config file's folder."""

    model_config = ConfigDict(extra="forbid")
    store: str = Field(description="local:DIR or kubo:MULTIADDR")
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=1, le=65535)
    eth_key_file: str = "keys/eth-key.json"
    master_public_key_file: str = f"keys/{_MPK}"
    threshold_public_file: str = f"keys/{_THRESHOLD}"
    consortium_file: str = f"keys/{_ROSTER}"
    reader_keys_file: str = f"keys/{READER_KEYS_FILE}"
    state_dir: str = "state"
    model: dict[str, Any] = Field(description="the consortium's model spec (fedledger.fl.ModelSpec fields)")
    init_seed: int = 0
    min_updates: int = Field(0, ge=0, description="0 = wait for every active institution")
    round_deadline_seconds: float = Field(
        300.0, gt=0, description="after this, aggregate the updates that arrived (if any) instead of waiting on"
    )
    session_timeout_seconds: float = Field(
        120.0, gt=0, description="a signing session that has not finished by then is replaced by a new one"
    )
    signing_grace_seconds: float = Field(
        SIGNING_GRACE_SECONDS,
        gt=0,
        description="once k commitments (or approvals) are in, wait this long for the other members",
    )
    partial_timeout_seconds: float = Field(
        PARTIAL_TIMEOUT_SECONDS,
        gt=0,
        description="a signer that committed but sends no partial signature by then is left out of the next session",
    )
    max_update_norm: float | None = Field(None, gt=0)
    norm_policy: str = Field("reject", pattern="^(reject|clip)$")
    dp_epsilon: float | None = Field(
        None,
        gt=0,
        description="central DP: the epsilon the run's rounds spend together (noise calibrated per round); "
        "none: no DP. The ledger's budget must allow it",
    )
    dp_delta: float = Field(1e-5, gt=0, lt=1, description="central DP: the delta the epsilon target is met at")
    dp_clip: float = Field(1.0, gt=0, description="central DP: L2 bound on each member's update (change from the base)")
    poll_interval: float = Field(0.25, gt=0, le=60)
    secure_aggregation: bool = Field(
        False, description="rounds sum masked inputs (docs/secagg.md); every node's config must say the same"
    )
    secagg_phase_seconds: float = Field(
        60.0, gt=0, description="how long a secure-aggregation phase waits for members still missing"
    )
    max_request_bytes: int = Field(MAX_BODY_BYTES, ge=1024, description="larger request bodies get 413")
    rate_limit_per_second: float = Field(
        RATE_PER_SECOND, gt=0, description="requests per second one client address may make (beyond: 429)"
    )
    rate_limit_burst: int = Field(RATE_BURST, ge=1, description="requests one client address may make at once")

    def request_limits(self) -> RequestLimits:
        return RequestLimits(self.max_request_bytes, self.rate_limit_per_second, self.rate_limit_burst)


def load_config(path: str | Path) -> tuple[AggregatorConfig, Path]:
    """Load and validate the aggregator's config; returns it with its folder."""
    return load_toml(path, AggregatorConfig, CONFIG_NAME, " (create one with `fedledger aggregator init`)")


def save_config(config: AggregatorConfig, path: str | Path) -> Path:
    return save_toml(config, path, CONFIG_NAME)
