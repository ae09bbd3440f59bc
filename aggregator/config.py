"""The aggregator's configuration file (TOML), validated on load with messages that name the field."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_NAME = "aggregator.toml"


class AggregatorConfigError(Exception):
    """The configuration file is missing or invalid; the message says which field and why."""


class AggregatorConfig(BaseModel):
    """How the aggregator runs rounds; paths are relative to the config file's folder."""

    model_config = ConfigDict(extra="forbid")
    rpc_url: str
    contract: str = Field(pattern=r"^0x[0-9a-fA-F]{40}$")
    store: str = Field(description="local:DIR or kubo:MULTIADDR")
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=1, le=65535)
    eth_key_file: str = "keys/eth-key.json"
    master_public_key_file: str = "keys/sign-master-public-key.pem"
    threshold_public_file: str = "keys/threshold-public.json"
    consortium_file: str = "keys/consortium.json"
    state_dir: str = "state"
    model: dict[str, Any] = Field(description="the consortium's model spec (fedledger.fl.ModelSpec fields)")
    init_seed: int = 0
    min_updates: int = Field(0, ge=0, description="0 = wait for every active institution")
    round_deadline_seconds: float = Field(300.0, gt=0)
    session_timeout_seconds: float = Field(120.0, gt=0)
    max_update_norm: float | None = Field(None, gt=0)
    norm_policy: str = Field("reject", pattern="^(reject|clip)$")
    poll_interval: float = Field(0.25, gt=0, le=60)


def load_config(path: str | Path) -> tuple[AggregatorConfig, Path]:
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AggregatorConfigError(f"no aggregator config at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AggregatorConfigError(f"{path} is not valid TOML: {exc}") from None
    try:
        return AggregatorConfig.model_validate(raw), path.parent.resolve()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise AggregatorConfigError(f"invalid aggregator config {path}: {problems}") from None


def save_config(config: AggregatorConfig, path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(tomli_w.dumps(config.model_dump(exclude_none=True)), encoding="utf-8")
    tmp.replace(path)
    return path
