"""Accuracy and macro-F1 of a model state on a labelled set (macro-F1 weighs rare classes fairly)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from fedledger.fl.models import ModelSpec, build_model


def predict(
    spec: ModelSpec,
    state: Mapping[str, torch.Tensor],
    X: np.ndarray | torch.Tensor,
    width_rate: float = 1.0,
    batch_size: int = 1024,
) -> np.ndarray:
    """Predicted class ids of the model of ``spec`` at ``width_rate`` loaded with ``state``."""
    model = build_model(spec, width_rate)
    model.load_state_dict(dict(state), strict=True)
    model.eval()
    inputs = torch.as_tensor(np.ascontiguousarray(X) if isinstance(X, np.ndarray) else X, dtype=torch.float32)
    with torch.inference_mode():
        outputs = [model(inputs[i : i + batch_size]).argmax(dim=1) for i in range(0, len(inputs), batch_size)]
    return torch.cat(outputs).numpy() if outputs else np.zeros(0, dtype=np.int64)


def evaluate(
    spec: ModelSpec,
    state: Mapping[str, torch.Tensor],
    X: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    width_rate: float = 1.0,
) -> dict[str, float]:
    """``{"accuracy": ..., "macro_f1": ...}`` in [0, 1]; F1 averages the classes in ``y`` or predicted."""
    labels = np.asarray(y)
    if len(labels) == 0:
        raise ValueError("cannot evaluate on an empty set")
    predicted = predict(spec, state, X, width_rate)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
    }
