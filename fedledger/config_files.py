"""TOML configuration files validated by pydantic models, with errors that name the field.

Shared by the node's and the aggregator's config files, so both report problems the same way.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import tomli_w
from pydantic import BaseModel, ValidationError

from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_write_text

M = TypeVar("M", bound=BaseModel)


class ConfigError(FedLedgerError):
    """A configuration file is missing or invalid; the message says which file, field and why."""


def _file(path: str | Path, default_name: str) -> Path:
    path = Path(path)
    return path / default_name if path.is_dir() else path


def read_toml(target: Path, missing: str) -> dict[str, Any]:
    """The TOML document at ``target``; ConfigError saying ``missing`` when there is no file."""
    try:
        return tomllib.loads(target.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(missing) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {target}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{target} is not valid TOML: {exc}") from None


def load_toml(path: str | Path, model: type[M], default_name: str, missing_hint: str = "") -> tuple[M, Path]:
    """Load ``path`` (or ``path/default_name``) into ``model``; returns it with the file's folder."""
    target = _file(path, default_name)
    raw = read_toml(target, f"no config at {target}{missing_hint}")
    try:
        return model.model_validate(raw), target.parent.resolve()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid config {target}: {problems}") from None


def save_toml(config: BaseModel, path: str | Path, default_name: str) -> Path:
    """Write ``config`` as TOML atomically (config files hold no secrets: keys live apart, 0600)."""
    target = _file(path, default_name)
    return atomic_write_text(target, tomli_w.dumps(config.model_dump(exclude_none=True)))
