"""Global flat positions of a sub-model, from its public index map given as integer arrays.

Why: masks are indexed by global position, so two members derive the same mask value for an
entry both cover, and the aggregator adds each member's flat upload at its positions. The
global model is laid out as its tensors in sorted name order, each in C order; a sub-model's
flat vector lists its entries in the same order (its tensors sorted, each in C order), and
``positions[k]`` is the global index of its k-th entry. Nothing here imports ``fedledger.fl``:
index maps arrive as ``{name: (index vector or None per dimension)}`` plus global shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedledger.secagg.errors import SecAggInputError

_MIN_RUN = 64  # average run length below which one fancy-index add is faster than slices
IndexVectors = Mapping[str, Sequence[object]]  # name -> per-dimension int array (or tensor) or None


def global_offsets(global_shapes: Mapping[str, Sequence[int]]) -> tuple[dict[str, int], int]:
    """Start offset of each tensor in the global flat vector, and the global length."""
    offsets, total = {}, 0
    for name in sorted(global_shapes):
        offsets[name] = total
        total += int(np.prod(global_shapes[name], dtype=np.int64))
    return offsets, total


def flat_positions(global_shapes: Mapping[str, Sequence[int]], indices: IndexVectors) -> np.ndarray:
    """Global flat positions (int64) of the sub-model's entries, in its flat order."""
    offsets, _ = global_offsets(global_shapes)
    parts = []
    for name in sorted(indices):
        if name not in global_shapes:
            raise SecAggInputError(f"tensor {name}: not in the global model")
        shape = tuple(int(s) for s in global_shapes[name])
        dims = indices[name]
        if len(dims) != len(shape):
            raise SecAggInputError(f"tensor {name}: {len(dims)} index vectors for {len(shape)} dimensions")
        axes = []
        for d, (vec, size) in enumerate(zip(dims, shape, strict=True)):
            axis = np.arange(size, dtype=np.int64) if vec is None else np.asarray(vec, dtype=np.int64).reshape(-1)
            if axis.size == 0 or axis.min() < 0 or axis.max() >= size or np.unique(axis).size != axis.size:
                raise SecAggInputError(f"tensor {name} dimension {d}: index vector outside [0, {size}) or repeated")
            axes.append(axis)
        strides = np.array([int(np.prod(shape[d + 1 :], dtype=np.int64)) for d in range(len(shape))], dtype=np.int64)
        flat = np.zeros([a.size for a in axes], dtype=np.int64) + offsets[name]
        for d, axis in enumerate(axes):
            view = [1] * len(axes)
            view[d] = axis.size
            flat += (axis * strides[d]).reshape(view)
        parts.append(flat.reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


Runs = tuple[list[int], list[int], list[int]]  # (global starts, sub starts, lengths)


def runs(positions: np.ndarray) -> Runs | None:
    """Contiguous runs of ``positions``, or None when they are too short to beat fancy indexing."""
    if positions.size == 0:
        return [], [], []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    if breaks.size * _MIN_RUN > positions.size:
        return None
    sub_starts = np.concatenate(([0], breaks))
    lengths = np.diff(np.concatenate((sub_starts, [positions.size])))
    return positions[sub_starts].tolist(), sub_starts.tolist(), lengths.tolist()


RowBlock = tuple[int, int, int, int, int]  # (global start, global step, sub start, length, rows)


def row_blocks(blocks: Runs) -> list[RowBlock]:
    """Consecutive runs of one length at one global step, merged into one block each.

    Why: a sub-model keeps a window of every row of a matrix, so its runs repeat at the row
    length; each block is one 2-D strided view, one numpy operation instead of one per row.
    """
    out: list[list[int]] = []
    for g, s, n in zip(*blocks, strict=True):
        if out:
            last = out[-1]
            step = g - last[0] if last[4] == 1 else last[1]
            if n == last[3] and step >= n and g == last[0] + step * last[4]:
                last[1], last[4] = step, last[4] + 1
                continue
        out.append([g, n, s, n, 1])
    return [(g, step, s, n, rows) for g, step, s, n, rows in out]


def row_blocks_within(blocks: list[RowBlock], start: int, stop: int) -> list[RowBlock]:
    """The parts of ``blocks`` over sub-vector entries [start, stop), sub starts counted from ``start``.

    Why: unmasking takes a member's vector one cache-sized piece at a time.
    """
    out: list[RowBlock] = []
    for g, step, s, n, rows in blocks:
        low, high = max(s, start) - s, min(s + n * rows, stop) - s  # offsets into this block
        if low >= high:
            continue
        first, last = low // n, high // n
        if first == last:  # inside one row
            out.append((g + first * step + low % n, step, s + low - start, high - low, 1))
            continue
        if low % n:  # the rest of a partial first row
            out.append((g + first * step + low % n, step, s + low - start, n - low % n, 1))
            first += 1
        if last > first:
            out.append((g + first * step, step, s + first * n - start, n, last - first))
        if high % n:  # the start of a partial last row
            out.append((g + last * step, step, s + last * n - start, high % n, 1))
    return out


def add_rows(target: np.ndarray, blocks: list[RowBlock], values: np.ndarray) -> None:
    """target[block's global entries] += values[block's sub entries], block by block."""
    for g, step, s, n, rows in blocks:
        source = values[s : s + n * rows].reshape(rows, n)
        if rows == 1:
            target[g : g + n] += source[0]
            continue
        whole = rows if g + rows * step <= target.size else rows - 1  # the last row may end the vector
        target[g : g + whole * step].reshape(whole, step)[:, :n] += source[:whole]
        if whole < rows:
            target[g + whole * step : g + whole * step + n] += source[whole]


@dataclass(frozen=True)
class EntryWeights:
    """The public weight (sum of the covering members' weights) of every global entry, held as
    constant segments between run edges plus the entries of members without runs.

    Why not one int64 per entry: decoding needs only each piece's divisors, built from a few
    segments in cache; the full array (``dense``) is made only when someone asks for it.
    """

    length: int
    starts: np.ndarray  # increasing segment starts, the first 0
    levels: np.ndarray  # int64 weight of each segment
    scattered: np.ndarray | None  # int64 per entry: members given entry by entry (no runs)

    def dense(self) -> np.ndarray:
        """The weight of every entry (int64)."""
        return self.piece(0, self.length)

    def piece(self, start: int, stop: int) -> np.ndarray:
        """The weights of entries [start, stop) (int64)."""
        levels, lengths = self.segments(start, stop)
        out = np.repeat(levels, lengths)
        return out if self.scattered is None else out + self.scattered[start:stop]

    def segments(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(level, length) of the segments over [start, stop), the runs' part only."""
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        end = int(np.searchsorted(self.starts, stop, side="left"))
        bounds = np.concatenate(([start], self.starts[first + 1 : end], [stop]))
        return self.levels[first:end], np.diff(bounds)


def entry_weights(length: int, members: list[tuple[np.ndarray, Runs | None, int]]) -> EntryWeights:
    """The weights of the entries covered by (positions, runs, weight) members.

    By runs the weight is constant between run edges: the level after each sorted edge is a
    cumulative sum over the edges alone. O(runs log runs), not O(entries).
    """
    edges: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    steps: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    scattered: np.ndarray | None = None
    for positions, blocks, weight in members:
        if blocks is None:
            scattered = np.zeros(length, dtype=np.int64) if scattered is None else scattered
            scattered[positions] += weight
            continue
        starts, lengths = np.asarray(blocks[0], dtype=np.int64), np.asarray(blocks[2], dtype=np.int64)
        edges += [starts, starts + lengths]
        steps += [np.full(starts.size, weight, dtype=np.int64), np.full(starts.size, -weight, dtype=np.int64)]
    at = np.concatenate(edges)
    order = np.argsort(at, kind="stable")
    return EntryWeights(length, at[order], np.cumsum(np.concatenate(steps)[order]), scattered)


def coverage_weights(length: int, members: list[tuple[np.ndarray, Runs | None, int]]) -> np.ndarray:
    """Sum of the weights of the members covering each entry (int64), from (positions, runs, weight)."""
    return entry_weights(length, members).dense()


def flatten_state(state: Mapping[str, object]) -> np.ndarray:
    """A state dict (tensors or arrays) as one float32 vector: tensors in sorted name order, C order."""
    parts = [_as_numpy(state[name]).astype(np.float32, copy=False).reshape(-1) for name in sorted(state)]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


def unflatten(vector: np.ndarray, global_shapes: Mapping[str, Sequence[int]]) -> dict[str, np.ndarray]:
    """The global flat vector cut back into named arrays of the global shapes."""
    offsets, total = global_offsets(global_shapes)
    if vector.size != total:
        raise SecAggInputError(f"vector has {vector.size} entries, the global model {total}")
    return {
        name: vector[offsets[name] : offsets[name] + int(np.prod(shape, dtype=np.int64))].reshape(tuple(shape))
        for name, shape in global_shapes.items()
    }


def _as_numpy(value: object) -> np.ndarray:
    detach = getattr(value, "detach", None)
    if detach is not None:  # a torch tensor, without importing torch here
        return detach().cpu().numpy()
    return np.asarray(value)
