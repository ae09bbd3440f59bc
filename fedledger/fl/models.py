"""Width-scalable model families: an MLP for tabular data and a small CNN for images.

A width rate r in (0, 1] keeps ceil(r * C) units of every hidden layer while the input and
output layers keep their size, so every sub-model's tensors are blocks of the global tensors.
The spec is plain data (JSON) so it can travel in a round record and rebuild the same model.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

FAMILIES = ("mlp", "cnn")


@dataclass(frozen=True)
class ModelSpec:
    """What model the consortium trains: family, input shape, classes and hidden widths at rate 1.

    ``input_shape`` is ``(features,)`` for the MLP and ``(channels, height, width)`` for the CNN;
    ``hidden`` are the hidden layer widths (MLP units / CNN channels). ``normalise`` puts a
    layer norm (MLP) / one-group group norm (CNN) after every hidden layer: its statistics are
    taken over the units present, so activations have the same scale at every width (no running
    statistics to go stale, unlike batch norm). ``scale_by_rate`` divides the last hidden
    activations by the width rate while training a sub-model (HeteroFL's scaler), so the head
    trained narrow is calibrated for the full-width sum it will later join.
    """

    family: str
    input_shape: tuple[int, ...]
    num_classes: int
    hidden: tuple[int, ...]
    normalise: bool = True
    scale_by_rate: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"model family must be one of {FAMILIES}, got {self.family!r}")
        expected_dims = 1 if self.family == "mlp" else 3
        if len(self.input_shape) != expected_dims or any(int(d) < 1 for d in self.input_shape):
            raise ValueError(f"{self.family} input_shape must be {expected_dims} positive ints")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError("hidden must list at least one positive width")
        if self.num_classes < 2:
            raise ValueError("num_classes must be at least 2")
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"] = list(self.input_shape)
        data["hidden"] = list(self.hidden)
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): equal specs give equal bytes."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        try:
            return cls(
                family=str(data["family"]),
                input_shape=tuple(int(d) for d in data["input_shape"]),
                num_classes=int(data["num_classes"]),
                hidden=tuple(int(h) for h in data["hidden"]),
                normalise=bool(data.get("normalise", True)),
                scale_by_rate=bool(data.get("scale_by_rate", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid model spec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls.from_dict(json.loads(text))

    def hidden_at(self, width_rate: float) -> tuple[int, ...]:
        """Hidden widths of the sub-model at ``width_rate``: ceil(r * C) per layer."""
        check_rate(width_rate)
        return tuple(scaled_width(c, width_rate) for c in self.hidden)

    def narrowed(self, width_rate: float) -> ModelSpec:
        """A spec whose full width is this spec's sub-model at ``width_rate`` (homogeneous baseline)."""
        return ModelSpec(
            self.family,
            self.input_shape,
            self.num_classes,
            self.hidden_at(width_rate),
            self.normalise,
            self.scale_by_rate,
        )


def check_rate(width_rate: float) -> None:
    if not (isinstance(width_rate, int | float) and 0.0 < float(width_rate) <= 1.0):
        raise ValueError(f"width rate must be in (0, 1], got {width_rate!r}")


def scaled_width(channels: int, width_rate: float) -> int:
    """ceil(r * C), guarded against float noise (1/3 * 3 must give 1, not 2)."""
    return max(1, min(channels, math.ceil(width_rate * channels - 1e-9)))


class _Scaler(nn.Module):
    """Divides by the width rate in training mode only (HeteroFL); identity at evaluation."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.rate if self.training and self.rate != 1.0 else x


class _WidthNet(nn.Module):
    """Hidden blocks (``layers.<i>``, optional ``norms.<i>``), then the linear ``head``."""

    def __init__(self, spec: ModelSpec, width_rate: float) -> None:
        super().__init__()
        widths = spec.hidden_at(width_rate)
        previous = spec.input_shape[0]
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        for width in widths:
            self.layers.append(self._layer(previous, width))
            if spec.normalise:
                self.norms.append(self._norm(width))
            previous = width
        self.head = nn.Linear(previous, spec.num_classes)
        self.scaler = _Scaler(width_rate if spec.scale_by_rate else 1.0)

    def _layer(self, fan_in: int, width: int) -> nn.Module:
        raise NotImplementedError

    def _norm(self, width: int) -> nn.Module:
        raise NotImplementedError

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = self.layers[i](x)
        if len(self.norms):
            x = self.norms[i](x)
        return torch.relu(x)


class WidthMLP(_WidthNet):
    """Linear-LayerNorm-ReLU blocks and a linear head."""

    def _layer(self, fan_in: int, width: int) -> nn.Module:
        return nn.Linear(fan_in, width)

    def _norm(self, width: int) -> nn.Module:
        return nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for i in range(len(self.layers)):
            x = self._block(i, x)
        return self.head(self.scaler(x))


class WidthCNN(_WidthNet):
    """3x3 conv-GroupNorm(1)-ReLU-maxpool blocks, global average pooling, linear head.

    Global pooling makes the head's input the last channel count whatever the image size, so
    the same family serves 8x8 digits and 28x28 MedMNIST images.
    """

    def _layer(self, fan_in: int, width: int) -> nn.Module:
        return nn.Conv2d(fan_in, width, kernel_size=3, padding=1)

    def _norm(self, width: int) -> nn.Module:
        return nn.GroupNorm(1, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(len(self.layers)):
            x = self._block(i, x)
            if x.shape[-1] >= 2 and x.shape[-2] >= 2:
                x = torch.nn.functional.max_pool2d(x, 2)
        return self.head(self.scaler(x.mean(dim=(-2, -1))))


def build_model(spec: ModelSpec, width_rate: float = 1.0) -> nn.Module:
    """The model of ``spec`` at ``width_rate`` (randomly initialised; load a state into it)."""
    check_rate(width_rate)
    return WidthMLP(spec, width_rate) if spec.family == "mlp" else WidthCNN(spec, width_rate)


def tensor_axes(spec: ModelSpec) -> dict[str, tuple[int | None, ...]]:
    """For every parameter, which hidden layer each dimension follows (None: fixed size).

    This is what makes sub-model extraction generic: a dimension labelled ``i`` keeps the
    selected units of hidden layer ``i``; unlabelled dimensions (inputs, classes, kernels) stay whole.
    """
    axes: dict[str, tuple[int | None, ...]] = {}
    kernel: tuple[None, ...] = (None, None) if spec.family == "cnn" else ()
    for i in range(len(spec.hidden)):
        axes[f"layers.{i}.weight"] = (i, i - 1 if i > 0 else None, *kernel)
        axes[f"layers.{i}.bias"] = (i,)
        if spec.normalise:
            axes[f"norms.{i}.weight"] = (i,)
            axes[f"norms.{i}.bias"] = (i,)
    last = len(spec.hidden) - 1
    axes["head.weight"] = (None, last)
    axes["head.bias"] = (None,)
    return axes


def parameter_shapes(spec: ModelSpec, width_rate: float = 1.0) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter of the sub-model at ``width_rate``, computed without building it."""
    widths = spec.hidden_at(width_rate)
    kernel = (3, 3) if spec.family == "cnn" else ()
    shapes: dict[str, tuple[int, ...]] = {}
    previous = spec.input_shape[0]
    for i, width in enumerate(widths):
        shapes[f"layers.{i}.weight"] = (width, previous, *kernel)
        shapes[f"layers.{i}.bias"] = (width,)
        if spec.normalise:
            shapes[f"norms.{i}.weight"] = (width,)
            shapes[f"norms.{i}.bias"] = (width,)
        previous = width
    shapes["head.weight"] = (spec.num_classes, previous)
    shapes["head.bias"] = (spec.num_classes,)
    return shapes


def initial_global_state(spec: ModelSpec, seed: int) -> dict[str, torch.Tensor]:
    """Round 0's global model: the full-width model initialised from ``seed`` (reproducible)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec, 1.0)
    return {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}


def default_spec(input_shape: tuple[int, ...], num_classes: int) -> ModelSpec:
    """A sensible spec for a data set: MLP for feature vectors, CNN for images."""
    if len(input_shape) == 1:
        return ModelSpec("mlp", input_shape, num_classes, (64, 64))
    return ModelSpec("cnn", input_shape, num_classes, (32, 64))
