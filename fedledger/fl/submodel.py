"""Sub-model extraction and the mapping matrix (which global positions a sub-model covers).

The mapping is stored per tensor and per dimension as a vector of global indices (``None``
means the whole dimension), which is a compact exact form of the 0/1 mapping matrix. It has a
canonical JSON form and an SM3 digest so a ledger entry can name exactly what was covered.

Selections: ``static`` keeps the first ceil(r*C) units of every hidden layer (HeteroFL);
``rolling`` shifts that window by one unit per round, wrapping around (FedRolex), so over
time every global unit is trained by the small institutions too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from fedledger.digests import sm3
from fedledger.fl.models import ModelSpec, check_rate, parameter_shapes, tensor_axes

SELECTIONS = ("static", "rolling")
_MAX_SLICE_BLOCKS = 16  # beyond this many contiguous blocks, fall back to advanced indexing

DimIndex = torch.Tensor | None


@dataclass(frozen=True)
class IndexMap:
    """Per-tensor, per-dimension global index vectors of one sub-model.

    ``global_shapes[name]`` is the full-width shape; ``indices[name][d]`` is a 1-D int64 tensor of
    distinct global positions along dimension ``d`` (sub position k <-> global ``indices[k]``) or
    ``None`` when dimension ``d`` is kept whole.
    """

    width_rate: float
    global_shapes: Mapping[str, tuple[int, ...]]
    indices: Mapping[str, tuple[DimIndex, ...]]

    def sub_shape(self, name: str) -> tuple[int, ...]:
        """Shape of tensor ``name`` in the sub-model this map describes."""
        return tuple(
            full if idx is None else int(idx.numel())
            for full, idx in zip(self.global_shapes[name], self.indices[name], strict=True)
        )

    def is_full(self) -> bool:
        """True when every tensor covers its whole global tensor (plain FedAvg update)."""
        return all(idx is None for dims in self.indices.values() for idx in dims)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "width_rate": float(self.width_rate),
            "tensors": {
                name: {
                    "global_shape": list(self.global_shapes[name]),
                    "indices": [None if idx is None else [int(v) for v in idx.tolist()] for idx in dims],
                }
                for name, dims in sorted(self.indices.items())
            },
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no whitespace; equal maps give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> bytes:
        """32-byte SM3 digest of the canonical JSON: what a ledger entry records."""
        return sm3(self.to_json().encode())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexMap:
        """Parse and check a serialised map (untrusted input: every field is verified)."""
        try:
            if data.get("version") != 1:
                raise ValueError(f"unsupported index map version {data.get('version')!r}")
            rate = float(data["width_rate"])
            check_rate(rate)
            shapes: dict[str, tuple[int, ...]] = {}
            indices: dict[str, tuple[DimIndex, ...]] = {}
            for name, entry in data["tensors"].items():
                shape = tuple(int(d) for d in entry["global_shape"])
                raw = entry["indices"]
                if len(raw) != len(shape):
                    raise ValueError(f"tensor {name}: {len(raw)} index vectors for {len(shape)} dims")
                dims: list[DimIndex] = []
                for d, (size, vec) in enumerate(zip(shape, raw, strict=True)):
                    if vec is None:
                        dims.append(None)
                        continue
                    idx = torch.tensor([int(v) for v in vec], dtype=torch.int64)
                    _check_index_vector(name, d, idx, size)
                    dims.append(idx)
                shapes[str(name)] = shape
                indices[str(name)] = tuple(dims)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"malformed index map: {exc!r}") from exc
        return cls(rate, shapes, indices)

    @classmethod
    def from_json(cls, text: str) -> IndexMap:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"index map is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError("index map JSON must be an object")
        return cls.from_dict(data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IndexMap) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.digest())


def _check_index_vector(name: str, dim: int, idx: torch.Tensor, size: int) -> None:
    if idx.numel() == 0:
        raise ValueError(f"tensor {name} dim {dim}: empty index vector")
    if int(idx.min()) < 0 or int(idx.max()) >= size:
        raise ValueError(f"tensor {name} dim {dim}: index outside [0, {size})")
    if torch.unique(idx).numel() != idx.numel():
        raise ValueError(f"tensor {name} dim {dim}: repeated index")


def select_units(channels: int, keep: int, selection: str, round_index: int) -> torch.Tensor:
    """Which of ``channels`` global units a sub-model keeps (sorted global indices)."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "static" or keep == channels:
        return torch.arange(keep, dtype=torch.int64)
    start = round_index % channels
    return torch.sort((torch.arange(keep, dtype=torch.int64) + start) % channels).values


def make_index_map(spec: ModelSpec, width_rate: float, selection: str = "static", round_index: int = 0) -> IndexMap:
    """The mapping of the sub-model at ``width_rate`` chosen by ``selection`` for round ``round_index``."""
    check_rate(width_rate)
    if round_index < 0:
        raise ValueError("round_index must be >= 0")
    full = parameter_shapes(spec, 1.0)
    keep = spec.hidden_at(width_rate)
    units = [
        None if k == c else select_units(c, k, selection, round_index) for c, k in zip(spec.hidden, keep, strict=True)
    ]
    indices = {
        name: tuple(None if layer is None else units[layer] for layer in axes)
        for name, axes in tensor_axes(spec).items()
    }
    return IndexMap(float(width_rate), full, indices)


def full_index_map(global_state: Mapping[str, torch.Tensor]) -> IndexMap:
    """The mapping of a full-width update (plain FedAvg)."""
    shapes = {name: tuple(t.shape) for name, t in global_state.items()}
    return IndexMap(1.0, shapes, {name: (None,) * len(s) for name, s in shapes.items()})


# --- block access: contiguous runs become slices, everything else advanced indexing -------------


def _runs(idx: DimIndex, size: int) -> list[tuple[slice, slice]]:
    """Split a sorted-or-not index vector into (global slice, sub slice) contiguous runs."""
    if idx is None:
        return [(slice(0, size), slice(0, size))]
    values = idx.tolist()
    runs: list[tuple[slice, slice]] = []
    start = 0
    for k in range(1, len(values) + 1):
        if k == len(values) or values[k] != values[k - 1] + 1:
            runs.append((slice(values[start], values[k - 1] + 1), slice(start, k)))
            start = k
    return runs


def iter_blocks(
    dims: tuple[DimIndex, ...], shape: tuple[int, ...]
) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]] | None:
    """Contiguous (global, sub) slice blocks covering the mapping, or None if there are too many."""
    per_dim = [_runs(idx, size) for idx, size in zip(dims, shape, strict=True)]
    count = 1
    for runs in per_dim:
        count *= len(runs)
    if count > _MAX_SLICE_BLOCKS:
        return None
    return _product(per_dim)


def _product(
    per_dim: list[list[tuple[slice, slice]]],
) -> Iterator[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    if not per_dim:
        yield (), ()
        return
    for g, s in per_dim[0]:
        for g_rest, s_rest in _product(per_dim[1:]):
            yield (g, *g_rest), (s, *s_rest)


def advanced_index(dims: tuple[DimIndex, ...], shape: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Broadcastable index tensors selecting the mapped block (for index/index_put_)."""
    ndim = len(shape)
    out = []
    for d, (idx, size) in enumerate(zip(dims, shape, strict=True)):
        vec = torch.arange(size, dtype=torch.int64) if idx is None else idx
        view = [1] * ndim
        view[d] = vec.numel()
        out.append(vec.view(view))
    return tuple(out)


def gather(tensor: torch.Tensor, dims: tuple[DimIndex, ...]) -> torch.Tensor:
    """The sub-tensor of ``tensor`` at the mapped positions (a new contiguous tensor)."""
    if all(idx is None for idx in dims):
        return tensor.detach().clone().contiguous()
    shape = tuple(tensor.shape)
    blocks = iter_blocks(dims, shape)
    if blocks is None:
        return tensor[advanced_index(dims, shape)].detach().clone().contiguous()
    sub_shape = tuple(size if idx is None else int(idx.numel()) for idx, size in zip(dims, shape, strict=True))
    out = torch.empty(sub_shape, dtype=tensor.dtype)
    for g, s in blocks:
        out[s] = tensor[g]
    return out


def extract_submodel(
    global_state: Mapping[str, torch.Tensor],
    spec: ModelSpec,
    width_rate: float,
    selection: str = "static",
    round_index: int = 0,
) -> tuple[dict[str, torch.Tensor], IndexMap]:
    """Cut the sub-model at ``width_rate`` out of the global state; returns it and its mapping."""
    index_map = make_index_map(spec, width_rate, selection, round_index)
    return extract_with_map(global_state, index_map), index_map


def extract_with_map(global_state: Mapping[str, torch.Tensor], index_map: IndexMap) -> dict[str, torch.Tensor]:
    """The sub-state an index map describes (used to rebuild an update's base for norm checks)."""
    missing = sorted(set(index_map.indices) - set(global_state))
    if missing:
        raise KeyError(f"global state lacks tensors {missing}")
    out = {}
    for name, dims in index_map.indices.items():
        tensor = global_state[name]
        if tuple(tensor.shape) != tuple(index_map.global_shapes[name]):
            raise ValueError(
                f"tensor {name}: global shape {tuple(tensor.shape)} does not match the "
                f"index map's {tuple(index_map.global_shapes[name])}"
            )
        out[name] = gather(tensor, dims)
    return out
