"""Sub-model extraction and the mapping matrix (which global positions a sub-model covers).

The mapping is stored per tensor and per dimension as a vector of global indices (``None``
means the whole dimension), which is a compact exact form of the 0/1 mapping matrix. It has a
canonical JSON form and an SM3 digest so a ledger entry can name exactly what was covered.

Selections: ``static`` keeps the first ceil(r*C) units of every hidden layer (HeteroFL);
``rolling`` shifts that window by one unit per round, wrapping around (FedRolex), so over
time every global unit is trained by the small institutions too; ``random`` draws a fresh
seeded subset every round (federated-dropout style coverage).

Two optional knobs serve short federations, where a one-unit step barely moves in 50 rounds:
``step`` (rolling: fraction of the layer width the window advances per round) and ``offset``
(fraction of the layer width where this institution's window starts, so institutions can be
staggered to cover complementary units; see :func:`tiled_offsets`). Whatever the knobs, the
index map records the exact indices, so its digest names exactly what was covered.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fedledger.digests import sm3
from fedledger.fl.models import ModelSpec, check_rate, parameter_shapes, tensor_axes

SELECTIONS = ("static", "rolling", "random")
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


def select_units(
    channels: int,
    keep: int,
    selection: str,
    round_index: int,
    *,
    step: float | None = None,
    offset: float = 0.0,
    salt: int = 0,
) -> torch.Tensor:
    """Which of ``channels`` global units a sub-model keeps (sorted global indices).

    ``static``: the window ``offset*C .. +keep`` (the prefix when ``offset`` is 0, HeteroFL).
    ``rolling``: that window advanced by ``step*C`` units per round (one unit when ``step`` is
    None, FedRolex). ``random``: ``keep`` units drawn uniformly, seeded by (``salt``, round,
    ``channels``, ``keep``), so anyone can recompute them.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if not 0 < keep <= channels:
        raise ValueError(f"keep must be in [1, {channels}], got {keep}")
    if not 0.0 <= offset < 1.0:
        raise ValueError(f"offset must be a fraction in [0, 1), got {offset!r}")
    if step is not None and not 0.0 < step <= 1.0:
        raise ValueError(f"step must be a fraction in (0, 1], got {step!r}")
    if keep == channels:
        return torch.arange(keep, dtype=torch.int64)
    if selection == "random":
        digest = hashlib.sha256(f"fedledger-random-units:{salt}:{round_index}:{channels}:{keep}".encode()).digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "big") >> 1)
        return torch.sort(torch.randperm(channels, generator=generator)[:keep]).values
    start = math.floor(offset * channels + 1e-9)
    if selection == "rolling":
        units_per_round = 1 if step is None else max(1, round(step * channels))
        start += round_index * units_per_round
    if selection == "static" and start == 0:
        return torch.arange(keep, dtype=torch.int64)
    return torch.sort((torch.arange(keep, dtype=torch.int64) + start) % channels).values


def tiled_offsets(rates: Sequence[float]) -> list[float]:
    """Window offsets that lay the institutions' windows end to end around each layer.

    Institution i starts where institution i-1's window ends (fractions, modulo 1), so equal
    narrow institutions cover complementary units instead of the same prefix: with rates
    (1, 1/2, 1/2, 1/4, 1/8) the two half-width institutions get the two halves.
    """
    offsets, position = [], 0.0
    for rate in rates:
        check_rate(rate)
        offsets.append(position % 1.0)
        position += rate
    return offsets


def make_index_map(
    spec: ModelSpec,
    width_rate: float,
    selection: str = "static",
    round_index: int = 0,
    *,
    step: float | None = None,
    offset: float = 0.0,
    salt: int = 0,
) -> IndexMap:
    """The mapping of the sub-model at ``width_rate`` chosen by ``selection`` for round ``round_index``.

    ``step``, ``offset`` and ``salt`` are passed to :func:`select_units` (``salt`` mixed with the
    layer number, so layers of equal width draw different random units).
    """
    check_rate(width_rate)
    if round_index < 0:
        raise ValueError("round_index must be >= 0")
    full = parameter_shapes(spec, 1.0)
    keep = spec.hidden_at(width_rate)
    units = [
        None
        if k == c
        else select_units(c, k, selection, round_index, step=step, offset=offset, salt=salt * 1009 + layer)
        for layer, (c, k) in enumerate(zip(spec.hidden, keep, strict=True))
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
    if idx.numel() == 0:
        return []
    # a run ends wherever the next index is not this one + 1
    ends = [*(torch.nonzero(idx[1:] != idx[:-1] + 1).flatten() + 1).tolist(), int(idx.numel())]
    starts = [0, *ends[:-1]]
    first = idx[starts].tolist()
    return [(slice(f, f + e - s), slice(s, e)) for f, s, e in zip(first, starts, ends, strict=True)]


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
    *,
    step: float | None = None,
    offset: float = 0.0,
    salt: int = 0,
) -> tuple[dict[str, torch.Tensor], IndexMap]:
    """Cut the sub-model at ``width_rate`` out of the global state; returns it and its mapping."""
    index_map = make_index_map(spec, width_rate, selection, round_index, step=step, offset=offset, salt=salt)
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
