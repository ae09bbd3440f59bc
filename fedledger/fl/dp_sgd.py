"""Local DP-SGD through Opacus: a hospital's record-level privacy inside its own training.

Each step takes a Poisson sample of the records (each one with probability q = batch size /
records), clips every record's gradient to L2 norm C (Opacus's per-sample gradients), sums them,
adds N(0, (z C)**2) per coordinate and divides by the expected batch size. The privacy analysis
(the accountant, ``fedledger.dp.local``) needs exactly (z, C, q, steps) and assumes that nobody
but the hospital knows which records were drawn or which noise was added: so sampling and noise
come from fresh OS randomness unless a seed is given (tests and experiments only).
"""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer

# The loss of a batch of logits against its labels, summed over the records (an empty batch gives 0).
BatchLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class DPSGDPlan:
    """What a DP-SGD run does, fixed before it starts: the accountant's inputs besides z and C."""

    sample_rate: float
    steps: int


def dp_sgd_plan(records: int, batch_size: int, epochs: int) -> DPSGDPlan:
    """Sampling rate batch/records (at most 1) and round(1/q) steps per epoch, as Opacus's loader."""
    if records < 1 or batch_size < 1 or epochs < 1:
        raise ValueError("DP-SGD needs at least one record, a positive batch size and epochs")
    sample_rate = min(1.0, batch_size / records)
    return DPSGDPlan(sample_rate, epochs * max(1, round(1 / sample_rate)))


def _generator(seed: int | None, stream: int) -> torch.Generator:
    """A private generator: seeded (reproducible) or from 64 fresh OS-random bits per stream."""
    value = secrets.randbits(63) if seed is None else (seed * 2 + stream) % 2**63
    return torch.Generator().manual_seed(value)


def train_dp_sgd(
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    batch_loss: BatchLoss,
    *,
    noise_multiplier: float,
    max_grad_norm: float,
    batch_size: int,
    epochs: int,
    seed: int | None,
) -> tuple[float, DPSGDPlan]:
    """Train ``model`` in place by DP-SGD; returns the mean per-record loss of the last epoch and the plan."""
    if not (math.isfinite(noise_multiplier) and noise_multiplier > 0):
        raise ValueError(f"DP-SGD noise multiplier must be positive, got {noise_multiplier!r}")
    if not (math.isfinite(max_grad_norm) and max_grad_norm > 0):
        raise ValueError(f"DP-SGD clip (max grad norm) must be positive, got {max_grad_norm!r}")
    plan = dp_sgd_plan(len(y), batch_size, epochs)
    sampler, noise = _generator(seed, 0), _generator(seed, 1)
    wrapped = GradSampleModule(model, loss_reduction="sum")  # summed loss: each record's own gradient
    dp_optimiser = DPOptimizer(
        optimiser,
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        expected_batch_size=max(1, round(plan.sample_rate * len(y))),
        loss_reduction="mean",  # the noisy sum of clipped gradients over the expected batch size
        generator=noise,
    )
    steps_per_epoch = plan.steps // epochs
    last_loss = 0.0
    try:
        for _ in range(epochs):
            total, seen = 0.0, 0
            for _ in range(steps_per_epoch):
                batch = torch.nonzero(torch.rand(len(y), generator=sampler) < plan.sample_rate).flatten()
                dp_optimiser.zero_grad(set_to_none=True)
                loss = batch_loss(wrapped(X[batch]), y[batch])
                with warnings.catch_warnings():  # inputs never need gradients here: torch says so per step
                    warnings.filterwarnings("ignore", message="Full backward hook is firing")
                    loss.backward()
                dp_optimiser.step()
                total += float(loss.detach())
                seen += len(batch)
            last_loss = total / max(seen, 1)
    finally:
        wrapped._close()  # remove Opacus's hooks: the caller reads the plain model's state
    return last_loss, plan
