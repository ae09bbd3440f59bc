"""The consortium's learning task, and the check that a site's data fits it.

A task fixes what every site's samples look like (input shape), what they mean (the label set, in
an agreed order) and which model family learns them. Each site loads its own data through the
task, so a DICOM folder is resized to the task's input shape and its label names are mapped to the
task's label indices; anything that does not fit is refused with the numbers in the message,
instead of being trained silently into the wrong model.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedledger.fl.data import BUILTIN, Dataset, DatasetError, Shard, load_dataset, partition
from fedledger.fl.models import FAMILIES, ModelSpec

METRICS = ("accuracy", "macro_f1")
DATA_KINDS = ("builtin", "dicom", "npz")


class TaskMismatch(DatasetError):
    """A site's data does not fit the consortium's task; the message says what and by how much."""


@dataclass(frozen=True)
class Task:
    """What the consortium learns: input shape, ordered label names, model family and widths, metric."""

    input_shape: tuple[int, ...]
    labels: tuple[str, ...]
    family: str
    hidden: tuple[int, ...]
    metric: str = "accuracy"
    min_samples: int = 20
    validation_fraction: float = 0.2
    name: str = "task"

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"model family must be one of {FAMILIES}, got {self.family!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ValueError("labels must name at least two distinct classes")

    def model_spec(self) -> ModelSpec:
        """The global model every party builds from the task (no data needed)."""
        return ModelSpec(self.family, self.input_shape, len(self.labels), self.hidden)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "labels": list(self.labels),
            "family": self.family,
            "hidden": list(self.hidden),
            "metric": self.metric,
            "min_samples": self.min_samples,
            "validation_fraction": self.validation_fraction,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        try:
            return cls(
                input_shape=tuple(int(d) for d in data["input_shape"]),
                labels=tuple(str(v) for v in data["labels"]),
                family=str(data["family"]),
                hidden=tuple(int(h) for h in data["hidden"]),
                metric=str(data.get("metric", "accuracy")),
                min_samples=int(data.get("min_samples", 20)),
                validation_fraction=float(data.get("validation_fraction", 0.2)),
                name=str(data.get("name", "task")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TaskMismatch(f"invalid task description: {exc}") from None


@dataclass(frozen=True)
class SiteData:
    """Where one site's samples come from: a built-in set (demos split it), a DICOM folder, an .npz."""

    kind: str
    source: str
    labels_csv: str | None = None
    partitions: int = 1
    index: int = 0
    scheme: str = "iid"
    alpha: float = 0.5
    seed: int = 0


def _remap_labels(dataset: Dataset, task: Task, where: str) -> np.ndarray:
    """The dataset's labels as indices into the task's label list (by name, never by position)."""
    names = dataset.class_names or tuple(str(i) for i in range(dataset.num_classes))
    lookup = {name: i for i, name in enumerate(task.labels)}
    present = sorted({names[int(v)] for v in np.unique(dataset.y)})
    unknown = [n for n in present if n not in lookup]
    if unknown:
        raise TaskMismatch(
            f"{where}: label(s) {', '.join(repr(u) for u in unknown)} are not in the task's label set "
            f"{list(task.labels)}: relabel the data or add them to [task] labels"
        )
    table = np.asarray([lookup.get(n, -1) for n in names], dtype=np.int64)
    return table[dataset.y]


def load_for_task(site: SiteData, task: Task) -> Dataset:
    """Load a site's data shaped and labelled as the task says, or raise TaskMismatch saying why."""
    where = site.source
    if site.kind == "builtin" and site.source not in BUILTIN:
        raise TaskMismatch(f"{where}: not a built-in data set {BUILTIN}")
    if site.kind == "dicom" and not Path(site.source).is_dir():
        raise TaskMismatch(f"{where}: no DICOM folder there")
    if site.kind == "npz" and not Path(site.source).is_file():
        raise TaskMismatch(f"{where}: no .npz file there")
    size = task.input_shape[-1] if len(task.input_shape) == 3 else 28
    if site.kind == "dicom" and len(task.input_shape) == 3:
        channels, height, width = task.input_shape
        if height != width or channels != 1:
            raise TaskMismatch(f"{where}: DICOM slices become 1 x S x S images; the task wants {task.input_shape}")
    with _quiet_dicom_reader():
        dataset = load_dataset(site.source, labels_csv=site.labels_csv, image_size=size)
    shape = dataset.input_shape
    if shape != task.input_shape:
        raise TaskMismatch(
            f"{where}: samples have shape {shape}, the task's input shape is {task.input_shape}"
        )
    y = _remap_labels(dataset, task, where)
    return Dataset(dataset.name, dataset.X, y, len(task.labels), task.labels)


@contextlib.contextmanager
def _quiet_dicom_reader() -> Iterator[None]:
    """pydicom warns about every quirk of every file it reads; a site's log should show its steps."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        logger.setLevel(level)


def site_shard(site: SiteData, task: Task) -> Shard:
    """The site's training and validation split, checked against the task's minimum sample count."""
    dataset = load_for_task(site, task)
    check_sample_count(len(dataset), site.partitions, task, site.source)
    shards = partition(
        dataset,
        site.partitions,
        site.scheme,
        site.alpha,
        site.seed,
        test_fraction=task.validation_fraction,
        min_train=task.min_samples,
    )
    if not 0 <= site.index < len(shards):
        raise TaskMismatch(f"{site.source}: partition index {site.index} is outside the {len(shards)} partitions")
    shard = shards[site.index]
    check_sample_count(len(shard.train), 1, task, site.source)
    return shard


def check_sample_count(count: int, partitions: int, task: Task, where: str) -> None:
    """Refuse too few samples, saying how many there are and how many the task needs."""
    per_site = count // max(1, partitions)
    needed = int(np.ceil(task.min_samples / (1.0 - task.validation_fraction))) + 1
    if per_site < needed:
        have = f"{count} samples" + (f" split {partitions} ways" if partitions > 1 else "")
        raise TaskMismatch(
            f"{where}: {have} are too few: the task needs at least {task.min_samples} training samples "
            f"per site ({needed} before the {task.validation_fraction:g} validation split)"
        )
