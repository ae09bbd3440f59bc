"""Checks an update must pass before the aggregator uses it.

Every rule raises :class:`UpdateRejected` naming the institution and the tensor (or the whole
update), so a rejection can be logged, shown in the audit trail and traced to its source.
Rules: base model digest, sample count, mapping consistent with the announced width, tensor
set, shapes, dtype, NaN/Inf, values inside the exact aggregation's fixed-point range, and an
L2 bound on the update (trained minus base) with a reject or clip policy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch

from fedledger.errors import FedLedgerError
from fedledger.fl.aggregation import ClientUpdate
from fedledger.fl.exact_sum import out_of_range, range_exponent
from fedledger.fl.models import ModelSpec, parameter_shapes, tensor_axes
from fedledger.fl.submodel import extract_with_map

NORM_POLICIES = ("reject", "clip")
WHOLE_UPDATE = "*"


class UpdateRejected(FedLedgerError, ValueError):
    """An update failed validation; ``tensor`` is ``"*"`` for rules about the whole update."""

    def __init__(self, institution: str, tensor: str, reason: str) -> None:
        self.institution = institution
        self.tensor = tensor
        self.reason = reason
        where = "whole update" if tensor == WHOLE_UPDATE else f"tensor {tensor}"
        super().__init__(f"update from institution {institution!r} rejected ({where}): {reason}")


@dataclass(frozen=True)
class ValidationPolicy:
    """``max_norm``: bound on the L2 norm of (trained - base) over all tensors; None disables it.
    ``norm_policy``: ``reject`` the update or ``clip`` it back onto the bound."""

    max_norm: float | None = None
    norm_policy: str = "reject"

    def __post_init__(self) -> None:
        if self.norm_policy not in NORM_POLICIES:
            raise ValueError(f"norm_policy must be one of {NORM_POLICIES}, got {self.norm_policy!r}")
        if self.max_norm is not None and not (math.isfinite(self.max_norm) and self.max_norm > 0):
            raise ValueError("max_norm must be a positive finite number")


def validate_update(
    update: ClientUpdate,
    spec: ModelSpec,
    global_state: Mapping[str, torch.Tensor],
    expected_base_digest: bytes | None = None,
    policy: ValidationPolicy | None = None,
) -> ClientUpdate:
    """Return the update (clipped if the policy says so) or raise :class:`UpdateRejected`.

    ``expected_base_digest`` is the digest of the current global model file; an update that
    announces another base (or none, when one is expected) was trained on a different model.
    """
    policy = policy or ValidationPolicy()
    who = update.institution

    def reject(tensor: str, reason: str) -> UpdateRejected:
        return UpdateRejected(who, tensor, reason)

    if expected_base_digest is not None and update.base_digest != expected_base_digest:
        announced = update.base_digest.hex() if update.base_digest else "none"
        raise reject(WHOLE_UPDATE, f"built on base model {announced}, expected {expected_base_digest.hex()}")
    if not isinstance(update.num_samples, int) or update.num_samples <= 0:
        raise reject(WHOLE_UPDATE, f"sample count must be a positive integer, got {update.num_samples!r}")

    rate = update.index_map.width_rate
    if not 0.0 < rate <= 1.0:
        raise reject(WHOLE_UPDATE, f"width rate {rate} outside (0, 1]")
    expected_shapes = parameter_shapes(spec, rate)
    full_shapes = parameter_shapes(spec, 1.0)
    _check_mapping(update, spec, rate, expected_shapes, full_shapes, reject)

    missing = sorted(set(expected_shapes) - set(update.state))
    if missing:
        raise reject(missing[0], "missing from the update")
    extra = sorted(set(update.state) - set(expected_shapes))
    if extra:
        raise reject(extra[0], "not a parameter of the model")
    for name, shape in expected_shapes.items():
        tensor = update.state[name]
        if not isinstance(tensor, torch.Tensor):
            raise reject(name, "is not a tensor")
        if tuple(tensor.shape) != shape:
            raise reject(name, f"shape {tuple(tensor.shape)} does not match width rate {rate}: expected {shape}")
        expected_dtype = global_state[name].dtype
        if tensor.dtype != expected_dtype:
            raise reject(name, f"dtype {tensor.dtype} does not match the global model's {expected_dtype}")
        if not bool(torch.isfinite(tensor).all()):
            raise reject(name, "contains NaN or Inf")
        problem = out_of_range(tensor, range_exponent(global_state[name]))
        if problem:
            raise reject(name, problem)

    if policy.max_norm is not None:
        return _apply_norm_bound(update, global_state, policy, policy.max_norm, reject)
    return update


Reject = Callable[[str, str], UpdateRejected]


def _check_mapping(
    update: ClientUpdate,
    spec: ModelSpec,
    rate: float,
    expected: Mapping[str, tuple[int, ...]],
    full: Mapping[str, tuple[int, ...]],
    reject: Reject,
) -> None:
    """The mapping must have the announced width: right tensors, global shapes, index counts, and
    hidden units cut consistently (layer i's output units are layer i+1's input units)."""
    index_map = update.index_map
    for name in sorted(set(full) | set(index_map.indices)):
        if name not in index_map.indices:
            raise reject(name, "missing from the index map")
        if name not in full:
            raise reject(name, "index map names a tensor the model does not have")
        if tuple(index_map.global_shapes[name]) != full[name]:
            raise reject(name, f"index map global shape {tuple(index_map.global_shapes[name])} != {full[name]}")
        if len(index_map.indices[name]) != len(full[name]):
            raise reject(name, "index map has the wrong number of dimensions")
        if index_map.sub_shape(name) != expected[name]:
            raise reject(
                name,
                f"index map covers {index_map.sub_shape(name)}, width rate {rate} needs {expected[name]}",
            )
        for d, idx in enumerate(index_map.indices[name]):
            if idx is None:
                continue
            if int(idx.min()) < 0 or int(idx.max()) >= full[name][d]:
                raise reject(name, f"index map dim {d} points outside the global tensor")
            if torch.unique(idx).numel() != idx.numel():
                raise reject(name, f"index map dim {d} repeats a position")
    units: dict[int, tuple[str, torch.Tensor | None]] = {}
    for name, axes in sorted(tensor_axes(spec).items()):
        for d, layer in enumerate(axes):
            if layer is None:
                continue
            idx = index_map.indices[name][d]
            if layer not in units:
                units[layer] = (name, idx)
                continue
            first_name, first = units[layer]
            same = (first is None and idx is None) or (
                first is not None and idx is not None and torch.equal(first, idx)
            )
            if not same:
                raise reject(name, f"index map dim {d} selects other units of hidden layer {layer} than {first_name}")


def _apply_norm_bound(
    update: ClientUpdate,
    global_state: Mapping[str, torch.Tensor],
    policy: ValidationPolicy,
    bound: float,
    reject: Reject,
) -> ClientUpdate:
    base = extract_with_map(global_state, update.index_map)
    deltas = {name: update.state[name].double() - base[name].double() for name in base}
    squares = {name: float(d.pow(2).sum()) for name, d in deltas.items()}
    norm = math.sqrt(sum(squares.values()))
    if norm <= bound:
        return update
    largest = max(squares, key=lambda n: squares[n])
    if policy.norm_policy == "reject":
        raise reject(
            largest,
            f"update L2 norm {norm:.4g} exceeds bound {bound:.4g} (largest contribution from this tensor)",
        )
    factor = bound / norm
    clipped = {
        name: (base[name].double() + deltas[name] * factor).to(update.state[name].dtype).contiguous() for name in base
    }
    return replace(update, state=clipped)


class UpdateValidator:
    """Validation bound to one round (spec, global model, its digest, policy): pass it as the
    aggregator's ``check`` so nothing reaches the accumulator unchecked."""

    def __init__(
        self,
        spec: ModelSpec,
        global_state: Mapping[str, torch.Tensor],
        expected_base_digest: bytes | None = None,
        policy: ValidationPolicy | None = None,
    ) -> None:
        self.spec = spec
        self.global_state = global_state
        self.expected_base_digest = expected_base_digest
        self.policy = policy or ValidationPolicy()

    def __call__(self, update: ClientUpdate) -> ClientUpdate:
        return validate_update(update, self.spec, self.global_state, self.expected_base_digest, self.policy)
