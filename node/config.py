"""The institution's configuration file (TOML), validated on load with messages that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from fedledger.chain.settings import LedgerSettings
from fedledger.config_files import ConfigError, load_toml, save_toml
from fedledger.protocol.consortium import PublicMaterial
from fedledger.protocol.readers import READER_KEYS_FILE
from fedledger.protocol.rule_settings import RuleSettings
from fedledger.tls.settings import TLSSettings

_MPK, _THRESHOLD, _ROSTER = PublicMaterial.NAMES  # where `init` installs the public files
CONFIG_NAME = "node.toml"
POLL_INTERVAL_SECONDS = 0.5  # how often a node asks the ledger and the aggregator what changed
HTTP_TIMEOUT_SECONDS = 30.0  # one request to the aggregator's signing-session API
__all__ = ["CONFIG_NAME", "ConfigError", "DataConfig", "NodeConfig", "TrainingConfig", "load_config", "save_config"]


class DataConfig(BaseModel):
    """Where the institution's local data comes from and which share of it this node holds.

    In a real deployment ``source`` is the hospital's own data (a DICOM folder or a MedMNIST
    ``.npz``) with ``partitions = 1``; demos split one public data set between institutions.
    """

    model_config = ConfigDict(extra="forbid")
    source: str = Field(description="digits | breast_cancer | a DICOM folder with labels.csv | a MedMNIST .npz file")
    partitions: int = Field(1, ge=1, description="how many institutions share this source")
    index: int = Field(0, ge=0, description="this institution's partition (0-based)")
    scheme: Literal["iid", "dirichlet"] = "iid"
    alpha: float = Field(0.5, gt=0)
    seed: int = 0


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    seed: int = 0


class NodeConfig(LedgerSettings, TLSSettings, RuleSettings):
    """Everything a node needs to take part; paths are relative to the config file's folder."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    sm9_identity: str = Field(min_length=1, max_length=256)
    width_rate: float = Field(gt=0, le=1)
    aggregator_url: str
    store: str = Field(description="local:DIR or kubo:MULTIADDR")
    eth_key_file: str = "keys/eth-key.json"
    sm9_key_file: str = "keys/sm9-sign-key.json"
    share_file: str = "keys/consortium-share.json"
    master_public_key_file: str = f"keys/{_MPK}"
    threshold_public_file: str = f"keys/{_THRESHOLD}"
    consortium_file: str = f"keys/{_ROSTER}"
    reader_keys_file: str = f"keys/{READER_KEYS_FILE}"
    state_dir: str = "state"
    poll_interval: float = Field(
        POLL_INTERVAL_SECONDS, gt=0, le=60, description="seconds between looks at the ledger and the aggregator"
    )
    http_timeout_seconds: float = Field(
        HTTP_TIMEOUT_SECONDS, gt=0, description="one request to the aggregator's signing-session API"
    )
    verify_aggregation: bool = Field(
        True, description="recompute the global model from the included updates before co-signing"
    )
    max_update_norm: float | None = Field(
        None,
        gt=0,
        description="the update norm bound the consortium agreed (as the aggregator's); a round "
        "manifest naming another validation policy is refused",
    )
    norm_policy: str = Field("reject", pattern="^(reject|clip)$")
    secure_aggregation: bool = Field(
        False, description="take part in rounds by secure aggregation (docs/secagg.md), as the aggregator's config"
    )
    dp_clip: float = Field(
        1.0,
        gt=0,
        description="secure rounds with DP: the L2 bound this node clips its update to before masking "
        "(the aggregator's dp_clip; a manifest naming another is refused)",
    )
    # Local DP-SGD (docs/secagg.md): the hospital's record-level epsilon over local_dp_rounds rounds
    # (none: off); the node refuses a round that would spend more.
    local_dp_epsilon: float | None = Field(None, gt=0, description="local DP-SGD: record-level epsilon")
    local_dp_rounds: int = Field(50, ge=1, description="local DP-SGD: rounds local_dp_epsilon is planned over")
    local_dp_delta: float = Field(1e-5, gt=0, lt=1, description="local DP-SGD: delta (below 1 / records)")
    local_dp_clip: float = Field(1.0, gt=0, description="local DP-SGD: L2 bound on each record's gradient")
    data: DataConfig
    training: TrainingConfig = TrainingConfig()

    @field_validator("rpc_url", "aggregator_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")


def load_config(path: str | Path) -> tuple[NodeConfig, Path]:
    """Load and validate a node config; returns it with the folder its relative paths start from."""
    return load_toml(path, NodeConfig, CONFIG_NAME, " (create one with `fedledger node init`)")


def save_config(config: NodeConfig, path: str | Path) -> Path:
    """Write the config as TOML (no secrets live in it: keys are separate 0600 files)."""
    return save_toml(config, path, CONFIG_NAME)
