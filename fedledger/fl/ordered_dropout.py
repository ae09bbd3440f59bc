"""FjORD-style ordered dropout: a client also trains every narrower nested sub-model it holds.

Why: with plain alignment the units of the narrow widths are shaped only by the narrow clients'
data. When each client trains, per batch, its own width *and* every narrower width of the
federation (the prefixes of its own layers, nested like FjORD's ordered dropout), the units every
width shares learn from every client, so the narrow prefixes become a good model on their own and
the wide units only add to them. Nothing changes for the aggregator: the update is the client's
usual sub-model, with the usual index map.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.func import functional_call

from fedledger.fl.models import ModelSpec, build_model


class NestedWidths:
    """The narrower sub-models (``rates`` below ``width_rate``) as prefixes of one wider model's tensors."""

    def __init__(self, spec: ModelSpec, width_rate: float, rates: tuple[float, ...]) -> None:
        narrower = sorted({r for r in rates if spec.hidden_at(r) < spec.hidden_at(width_rate)}, reverse=True)
        self.rates = tuple(narrower)
        self._models = [build_model(spec, r) for r in narrower]
        self._prefixes = [
            {name: tuple(slice(0, size) for size in t.shape) for name, t in model.state_dict().items()}
            for model in self._models
        ]

    def logits(self, params: Mapping[str, torch.Tensor], X: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every narrower width, computed from prefixes of ``params`` (gradients flow back)."""
        return [
            functional_call(model, {name: params[name][cut] for name, cut in prefix.items()}, (X,))
            for model, prefix in zip(self._models, self._prefixes, strict=True)
        ]
