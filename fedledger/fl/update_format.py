"""Model files: local updates and global models as safetensors with one canonical metadata entry.

safetensors stores raw tensors plus a JSON header and never executes code on load (no pickle).
Its header writes ``__metadata__`` keys in hash-map order, so all our metadata lives in ONE key
(``fedledger``) holding canonical JSON: the same state and metadata always give the same bytes,
and therefore the same SM3 digest on the ledger.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from fedledger.digests import sm3
from fedledger.errors import FedLedgerError
from fedledger.fileio import atomic_writer
from fedledger.fl.aggregation import ClientUpdate
from fedledger.fl.models import ModelSpec, parameter_shapes
from fedledger.fl.submodel import IndexMap

UPDATE_FORMAT = "fedledger-fl-update/1"
GLOBAL_FORMAT = "fedledger-fl-global/1"
_META_KEY = "fedledger"


class ModelFileError(FedLedgerError, ValueError):
    """A model file is missing, malformed, of the wrong kind, or inconsistent with its metadata."""


@dataclass(frozen=True)
class UpdateMetadata:
    """What an institution announces with its update (mirrors the ledger entry's fields)."""

    institution: str
    round_index: int
    num_samples: int
    base_digest: bytes  # SM3 of the global model file this update was trained from
    index_map: IndexMap
    selection: str = "static"

    @property
    def width_rate(self) -> float:
        return self.index_map.width_rate

    @property
    def mapping_digest(self) -> bytes:
        return self.index_map.digest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": UPDATE_FORMAT,
            "institution": self.institution,
            "round": self.round_index,
            "num_samples": self.num_samples,
            "width_rate": self.width_rate,
            "selection": self.selection,
            "base_digest": self.base_digest.hex(),
            "mapping_digest": self.mapping_digest.hex(),
            "index_map": self.index_map.to_dict(),
        }


@dataclass(frozen=True)
class GlobalMetadata:
    """What a global model file says about itself."""

    round_index: int
    spec: ModelSpec | None


def _canonical(data: Mapping[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def _serialise(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any], what: str) -> bytes:
    tensors = {}
    for name, t in state.items():
        if not isinstance(t, torch.Tensor):
            raise ModelFileError(f"{what}: tensor {name} is not a torch.Tensor")
        tensors[name] = t.detach().contiguous()
    return bytes(st_save(tensors, metadata={_META_KEY: _canonical(meta)}))


def _write(path: str | Path, data: bytes) -> bytes:
    with atomic_writer(path) as fh:  # readers never see a half-written model
        fh.write(data)
    return sm3(data)


def _read(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        state = st_load(data)
        with safe_open(str(path), framework="pt") as fh:
            raw_meta = fh.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for malformed headers
        raise ModelFileError(f"{path}: not a safetensors file ({exc})") from exc
    if _META_KEY not in raw_meta:
        raise ModelFileError(f"{path}: no fedledger metadata")
    try:
        meta = json.loads(raw_meta[_META_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: metadata is not JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: metadata must be a JSON object")
    return state, meta


def update_bytes(state: Mapping[str, torch.Tensor], metadata: UpdateMetadata) -> bytes:
    """The exact bytes ``save_update`` writes (digest them without touching the disk)."""
    _check_update_shapes(state, metadata, "update")
    return _serialise(state, metadata.to_dict(), "update")


def save_update(path: str | Path, state: Mapping[str, torch.Tensor], metadata: UpdateMetadata) -> bytes:
    """Write an update file atomically; returns its SM3 digest (the ledger entry's digest)."""
    return _write(path, update_bytes(state, metadata))


def load_update(path: str | Path) -> tuple[dict[str, torch.Tensor], UpdateMetadata]:
    """Read an update file; checks the format, the mapping digest and the tensor shapes."""
    state, meta = _read(path)
    if meta.get("format") != UPDATE_FORMAT:
        raise ModelFileError(f"{path}: not an update file (format {meta.get('format')!r})")
    try:
        index_map = IndexMap.from_dict(meta["index_map"])
        metadata = UpdateMetadata(
            institution=str(meta["institution"]),
            round_index=int(meta["round"]),
            num_samples=int(meta["num_samples"]),
            base_digest=bytes.fromhex(str(meta["base_digest"])),
            index_map=index_map,
            selection=str(meta.get("selection", "static")),
        )
        announced_rate = float(meta["width_rate"])
        announced_mapping = bytes.fromhex(str(meta["mapping_digest"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: bad update metadata ({exc})") from exc
    if announced_rate != index_map.width_rate:
        raise ModelFileError(f"{path}: width rate {announced_rate} disagrees with the index map")
    if announced_mapping != index_map.digest():
        raise ModelFileError(f"{path}: mapping digest does not match the stored index map")
    _check_update_shapes(state, metadata, str(path))
    return state, metadata


def _check_update_shapes(state: Mapping[str, torch.Tensor], metadata: UpdateMetadata, what: str) -> None:
    names, mapped = set(state), set(metadata.index_map.indices)
    if names != mapped:
        diff = sorted(names ^ mapped)
        raise ModelFileError(f"{what} ({metadata.institution}): tensors {diff} are not in both state and index map")
    for name, t in state.items():
        if tuple(t.shape) != metadata.index_map.sub_shape(name):
            raise ModelFileError(
                f"{what} ({metadata.institution}), tensor {name}: shape {tuple(t.shape)} does not match "
                f"the index map {metadata.index_map.sub_shape(name)}"
            )


def load_client_update(path: str | Path) -> ClientUpdate:
    """An update file as the aggregator's :class:`ClientUpdate` (state, mapping, samples, base)."""
    state, meta = load_update(path)
    return ClientUpdate(meta.institution, state, meta.index_map, meta.num_samples, meta.base_digest)


def global_bytes(state: Mapping[str, torch.Tensor], spec: ModelSpec | None = None, round_index: int = 0) -> bytes:
    """The exact bytes ``save_global`` writes for this state."""
    meta: dict[str, Any] = {"format": GLOBAL_FORMAT, "round": int(round_index)}
    if spec is not None:
        meta["spec"] = spec.to_dict()
    return _serialise(state, meta, "global model")


def global_digest(state: Mapping[str, torch.Tensor], spec: ModelSpec | None = None, round_index: int = 0) -> bytes:
    """SM3 of the global model file's bytes, computed in memory (equals ``sm3_file`` of the file)."""
    return sm3(global_bytes(state, spec, round_index))


def save_global(
    path: str | Path, state: Mapping[str, torch.Tensor], spec: ModelSpec | None = None, round_index: int = 0
) -> bytes:
    """Write the global model atomically; returns the SM3 digest of the file (deterministic)."""
    return _write(path, global_bytes(state, spec, round_index))


def load_global(path: str | Path) -> tuple[dict[str, torch.Tensor], GlobalMetadata]:
    """Read a global model file; checks the format and, when a spec is stored, the shapes."""
    state, meta = _read(path)
    if meta.get("format") != GLOBAL_FORMAT:
        raise ModelFileError(f"{path}: not a global model file (format {meta.get('format')!r})")
    try:
        spec = ModelSpec.from_dict(meta["spec"]) if "spec" in meta else None
        info = GlobalMetadata(int(meta.get("round", 0)), spec)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: bad global model metadata ({exc})") from exc
    if spec is not None:
        expected = parameter_shapes(spec, 1.0)
        if set(expected) != set(state):
            raise ModelFileError(f"{path}: tensors {sorted(set(expected) ^ set(state))} disagree with the spec")
        for name, shape in expected.items():
            if tuple(state[name].shape) != shape:
                raise ModelFileError(f"{path}, tensor {name}: shape {tuple(state[name].shape)} != spec {shape}")
    return state, info


__all__ = [
    "GLOBAL_FORMAT",
    "UPDATE_FORMAT",
    "GlobalMetadata",
    "ModelFileError",
    "UpdateMetadata",
    "global_bytes",
    "global_digest",
    "load_client_update",
    "load_global",
    "load_update",
    "save_global",
    "save_update",
    "update_bytes",
]
