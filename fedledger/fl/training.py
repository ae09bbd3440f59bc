"""Local training of a sub-model: same seed, same data, same state in, same state out.

Determinism comes from a private generator for shuffling, single-threaded-safe CPU kernels and
no dropout; the model's own initialisation never matters because the sub-state is loaded into it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch

from fedledger.fl.data import Dataset
from fedledger.fl.dp_sgd import train_dp_sgd
from fedledger.fl.models import ModelSpec, build_model
from fedledger.fl.ordered_dropout import NestedWidths

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """How an institution trains in one round.

    ``mask_absent_classes``: logits of classes the institution has no samples of are masked out
    of the loss (HeteroFL's masked classifier), so a hospital that never sees a class does not
    teach the shared head to suppress it; important under label skew.

    ``logit_adjustment``: tau of the balanced-softmax / logit-adjusted loss (FedLC-style): while
    training, tau·log(local class prior) is added to the logits (prior smoothed by one sample
    per class), so a hospital's loss does not push down classes it rarely or never sees. A soft
    form of ``mask_absent_classes``; 0 disables it. Inference is unchanged.

    ``proximal_mu``: FedProx's proximal term (mu/2)·||w − w_start||² added to the loss, which keeps
    a round's local model near the model it started from, limiting client drift under skew.

    ``nested_rates``: FjORD's ordered dropout. Every width in this list that is narrower than the
    client's own is trained too, on the same batch, as the prefix of the client's layers
    (:mod:`fedledger.fl.ordered_dropout`); the loss is the sum over the widths. Empty: off.

    ``dp_noise_multiplier`` > 0 trains by local DP-SGD (:mod:`fedledger.fl.dp_sgd`): Poisson
    sampling at batch_size / records, per-record clipping to ``dp_max_grad_norm``, Gaussian
    noise. ``dp_seed`` None draws the sampling and the noise from fresh OS randomness (what the
    guarantee needs); a seed makes the run reproducible (tests, experiments). 0: off.
    """

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    seed: int = 0
    mask_absent_classes: bool = False
    proximal_mu: float = 0.0
    logit_adjustment: float = 0.0
    nested_rates: tuple[float, ...] = ()
    dp_noise_multiplier: float = 0.0
    dp_max_grad_norm: float = 1.0
    dp_seed: int | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be at least 1")
        if not self.lr > 0:
            raise ValueError("lr must be positive")
        if not self.logit_adjustment >= 0:
            raise ValueError("logit_adjustment must be >= 0")
        if not self.proximal_mu >= 0:
            raise ValueError("proximal_mu must be >= 0")
        if not (math.isfinite(self.dp_noise_multiplier) and self.dp_noise_multiplier >= 0):
            raise ValueError("dp_noise_multiplier must be >= 0 (0: no DP-SGD)")
        if not (math.isfinite(self.dp_max_grad_norm) and self.dp_max_grad_norm > 0):
            raise ValueError("dp_max_grad_norm must be positive")
        if self.dp_sgd and (self.nested_rates or self.proximal_mu > 0):
            raise ValueError("DP-SGD clips per-record gradients: it cannot train nested widths or a proximal term")
        if self.dp_sgd and (self.mask_absent_classes or self.logit_adjustment > 0):
            # both read the local class counts, which no per-record clip bounds
            raise ValueError("DP-SGD cannot use mask_absent_classes or logit_adjustment (they leak class counts)")

    @property
    def dp_sgd(self) -> bool:
        return self.dp_noise_multiplier > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def configure_threads(threads: int | None = None) -> int:
    """Keep torch to a few threads: the machine is shared and our models are small.

    Default: ``FEDLEDGER_TORCH_THREADS`` or 1 (tiny models gain nothing from more threads).
    """
    wanted = threads if threads is not None else int(os.environ.get("FEDLEDGER_TORCH_THREADS", "1"))
    wanted = max(1, min(wanted, os.cpu_count() or 1))
    torch.set_num_threads(wanted)
    return wanted


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def train_local(
    spec: ModelSpec,
    sub_state: Mapping[str, torch.Tensor],
    width_rate: float,
    dataset: Dataset,
    config: TrainConfig,
) -> tuple[dict[str, torch.Tensor], int, dict[str, float]]:
    """Train the sub-model at ``width_rate`` from ``sub_state`` on ``dataset``.

    Returns the new sub-state (same names, shapes, dtypes), the number of training samples (the
    aggregation weight) and metrics (mean loss of the last epoch, steps taken; with DP-SGD also
    its Poisson ``sample_rate``).
    """
    if len(dataset) == 0:
        raise ValueError(f"{dataset.name}: no training samples")
    model = build_model(spec, width_rate)
    model.load_state_dict(dict(sub_state), strict=True)
    model.train()
    optimiser = _optimizer(model, config)
    X, y = dataset.tensors()
    generator = torch.Generator().manual_seed(config.seed)
    absent: torch.Tensor | None = None
    if config.mask_absent_classes:
        absent = torch.ones(spec.num_classes, dtype=torch.bool)
        absent[torch.unique(y)] = False
    shift: torch.Tensor | None = None
    if config.logit_adjustment > 0:
        counts = torch.bincount(y, minlength=spec.num_classes).to(torch.float32) + 1.0
        shift = config.logit_adjustment * torch.log(counts / counts.sum())
    if config.dp_sgd:
        dp_loss, plan = train_dp_sgd(
            model,
            optimiser,
            X,
            y,
            partial(torch.nn.functional.cross_entropy, reduction="sum"),  # no class masking with DP-SGD
            noise_multiplier=config.dp_noise_multiplier,
            max_grad_norm=config.dp_max_grad_norm,
            batch_size=config.batch_size,
            epochs=config.epochs,
            seed=config.dp_seed,
        )
        metrics = {"loss": dp_loss, "steps": float(plan.steps), "sample_rate": plan.sample_rate}
        return _state_of(model), len(dataset), metrics
    nested = NestedWidths(spec, width_rate, config.nested_rates) if config.nested_rates else None
    params = dict(model.named_parameters())
    anchor = [p.detach().clone() for p in model.parameters()] if config.proximal_mu > 0 else None
    steps = 0
    last_loss = 0.0
    for _ in range(config.epochs):
        order = torch.randperm(len(y), generator=generator)
        total, seen = 0.0, 0
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            optimiser.zero_grad(set_to_none=True)
            every_width = [model(X[batch])]
            if nested is not None:
                every_width += nested.logits(params, X[batch])
            loss = torch.stack([_loss(logits, y[batch], absent, shift) for logits in every_width]).sum()
            if anchor is not None:
                drift = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
                loss = loss + 0.5 * config.proximal_mu * drift
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
            steps += 1
        last_loss = total / seen
    return _state_of(model), len(dataset), {"loss": last_loss, "steps": float(steps)}


def _state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone().contiguous() for name, t in model.state_dict().items()}


def _loss(
    logits: torch.Tensor, y: torch.Tensor, absent: torch.Tensor | None, shift: torch.Tensor | None
) -> torch.Tensor:
    """Cross-entropy of one width's logits, with the configured class masking and logit adjustment."""
    if absent is not None:
        logits = logits.masked_fill(absent, float("-inf"))
    if shift is not None:
        logits = logits + shift
    return torch.nn.functional.cross_entropy(logits, y)
