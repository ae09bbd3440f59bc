"""Data sources (all offline) and how a data set is split among institutions.

Sources: scikit-learn's breast cancer (tabular) and digits (8x8 images); a folder of DICOM
images with a labels CSV (pydicom); the MedMNIST ``.npz`` layout. Partitioners: IID and
Dirichlet(alpha) label skew, seeded; each institution keeps its own local test split.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fedledger.errors import FedLedgerError

BUILTIN = ("breast_cancer", "digits")
SCHEMES = ("iid", "dirichlet", "classes")
_MEDMNIST_SPLITS = ("train", "val", "test")


class DatasetError(FedLedgerError, ValueError):
    """A data source is missing or malformed; the message names the file."""


@dataclass(frozen=True)
class Dataset:
    """Samples ``X`` (float32; (N, F) tabular or (N, C, H, W) images) and labels ``y`` (int64, 0..K-1)."""

    name: str
    X: np.ndarray
    y: np.ndarray
    num_classes: int
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if len(self.X) != len(self.y):
            raise DatasetError(f"{self.name}: {len(self.X)} samples but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.X.shape[1:])

    def subset(self, indices: np.ndarray, name: str | None = None) -> Dataset:
        return Dataset(name or self.name, self.X[indices], self.y[indices], self.num_classes, self.class_names)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(self.X)), torch.from_numpy(np.ascontiguousarray(self.y))


@dataclass(frozen=True)
class Shard:
    """One institution's data: what it trains on, its validation split (for choosing settings,
    empty unless asked for) and its own local test split (for reporting only)."""

    institution: int
    train: Dataset
    test: Dataset
    val: Dataset | None = None


def load_dataset(
    name_or_path: str | Path,
    *,
    labels_csv: str | Path | None = None,
    image_size: int = 28,
    medmnist_splits: tuple[str, ...] = _MEDMNIST_SPLITS,
) -> Dataset:
    """A built-in name (``breast_cancer``, ``digits``), a DICOM folder, or a MedMNIST ``.npz`` file."""
    text = str(name_or_path)
    if text in BUILTIN:
        return _load_builtin(text)
    path = Path(name_or_path)
    if path.is_dir():
        return load_dicom_folder(path, labels_csv=labels_csv, image_size=image_size)
    if path.suffix == ".npz" and path.is_file():
        return load_medmnist(path, splits=medmnist_splits)
    raise DatasetError(f"{text}: not a built-in data set {BUILTIN}, a DICOM folder or an existing .npz file")


def _load_builtin(name: str) -> Dataset:
    from sklearn import datasets

    if name == "breast_cancer":
        bunch = datasets.load_breast_cancer()
        X = np.asarray(bunch.data, dtype=np.float64)
        # fixed standardisation: a consortium agrees on these constants once, before training
        X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
        names = tuple(str(n) for n in bunch.target_names)
        return Dataset(name, X.astype(np.float32), np.asarray(bunch.target, dtype=np.int64), 2, names)
    bunch = datasets.load_digits()
    images = (np.asarray(bunch.images, dtype=np.float32) / 16.0)[:, None, :, :]
    return Dataset(name, images, np.asarray(bunch.target, dtype=np.int64), 10, tuple(str(i) for i in range(10)))


def _encode_labels(raw: list[str], where: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer labels stay as given (0..K-1); anything else is mapped in sorted order."""
    if all(v.lstrip("-").isdigit() for v in raw):
        values = np.asarray([int(v) for v in raw], dtype=np.int64)
        if values.min() < 0:
            raise DatasetError(f"{where}: negative label")
        return values, tuple(str(i) for i in range(int(values.max()) + 1))
    names = tuple(sorted(set(raw)))
    lookup = {n: i for i, n in enumerate(names)}
    return np.asarray([lookup[v] for v in raw], dtype=np.int64), names


def load_dicom_folder(folder: str | Path, *, labels_csv: str | Path | None = None, image_size: int = 28) -> Dataset:
    """DICOM images listed in a CSV with columns ``file,label`` (default ``<folder>/labels.csv``).

    Each image becomes one grey channel, scaled to [0, 1] per image and resized to
    ``image_size`` squared (colour images are averaged, multi-frame images use the first frame).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    folder = Path(folder)
    csv_path = Path(labels_csv) if labels_csv is not None else folder / "labels.csv"
    try:
        with open(csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read labels CSV ({exc.strerror})") from exc
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise DatasetError(f"{csv_path}: needs a header with columns 'file' and 'label' and at least one row")
    images, raw_labels = [], []
    root = folder.resolve()
    for row in rows:
        file_path = (folder / row["file"]).resolve()
        if not file_path.is_relative_to(root):
            raise DatasetError(f"{csv_path}: {row['file']!r} points outside {folder}")
        try:
            pixels = np.asarray(pydicom.dcmread(file_path).pixel_array, dtype=np.float32)
        except (OSError, InvalidDicomError, AttributeError, ValueError, RuntimeError) as exc:
            raise DatasetError(f"{file_path}: cannot read DICOM pixels ({exc})") from exc
        images.append(_to_grey_square(pixels, image_size, file_path))
        raw_labels.append(row["label"].strip())
    labels, names = _encode_labels(raw_labels, str(csv_path))
    num_classes = max(2, len(names))
    return Dataset(folder.name, np.stack(images)[:, None], labels, num_classes, names)


def _to_grey_square(pixels: np.ndarray, size: int, where: Path) -> np.ndarray:
    if pixels.ndim == 4:  # frames, rows, cols, samples
        pixels = pixels[0]
    if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):
        pixels = pixels[..., :3].mean(axis=-1)
    elif pixels.ndim == 3:  # frames, rows, cols
        pixels = pixels[0]
    if pixels.ndim != 2:
        raise DatasetError(f"{where}: unsupported pixel array shape {pixels.shape}")
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
    tensor = torch.from_numpy(np.ascontiguousarray(scaled))[None, None]
    resized = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy().astype(np.float32)


def load_medmnist(path: str | Path, splits: tuple[str, ...] = _MEDMNIST_SPLITS) -> Dataset:
    """A MedMNIST ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``), splits concatenated.

    Images are uint8 (N, H, W) or (N, H, W, C); labels (N, 1) or (N,) class ids. Loaded with
    ``allow_pickle=False`` so a crafted file cannot run code.
    """
    path = Path(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read .npz ({exc})") from exc
    xs, ys = [], []
    with archive:
        for split in splits:
            if f"{split}_images" not in archive or f"{split}_labels" not in archive:
                raise DatasetError(f"{path}: missing {split}_images or {split}_labels")
            try:
                images = np.asarray(archive[f"{split}_images"])
                labels = np.asarray(archive[f"{split}_labels"])
            except ValueError as exc:  # e.g. object arrays, which would need pickle
                raise DatasetError(f"{path}: cannot read {split} arrays ({exc})") from exc
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1:
                raise DatasetError(f"{path}: {split}_labels must be single-label (N,) or (N, 1)")
            if images.ndim == 3:
                images = images[:, None]
            elif images.ndim == 4:
                images = np.transpose(images, (0, 3, 1, 2))
            else:
                raise DatasetError(f"{path}: {split}_images must be (N,H,W) or (N,H,W,C)")
            if len(images) != len(labels):
                raise DatasetError(f"{path}: {split} has {len(images)} images but {len(labels)} labels")
            scale = 255.0 if images.dtype == np.uint8 else 1.0
            xs.append(images.astype(np.float32) / scale)
            ys.append(labels.astype(np.int64))
    y = np.concatenate(ys)
    if y.min() < 0:
        raise DatasetError(f"{path}: negative label")
    num_classes = max(2, int(y.max()) + 1)
    return Dataset(path.stem, np.concatenate(xs), y, num_classes, tuple(str(i) for i in range(num_classes)))


def partition(
    dataset: Dataset,
    n: int,
    scheme: str = "iid",
    alpha: float = 1.0,
    seed: int = 0,
    test_fraction: float = 0.2,
    min_train: int = 8,
    val_fraction: float = 0.0,
    classes_per_institution: int = 2,
) -> list[Shard]:
    """Split ``dataset`` among ``n`` institutions; each keeps ``test_fraction`` of its share for
    testing and ``val_fraction`` for validation (taken after the test split, so asking for a
    validation split leaves every test split as it was).

    ``dirichlet``: for every class, the shares of the n institutions are drawn from
    Dirichlet(alpha) (small alpha = strong label skew). Draws repeat until every institution has
    at least ``min_train`` training samples, as is customary, so no institution is empty.
    ``classes``: HeteroFL's pathological split: each institution holds ``classes_per_institution``
    classes (dealt round-robin from a seeded class order), a class's samples shared evenly among
    its holders.
    """
    if n < 1:
        raise ValueError("need at least one institution")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    if not 0.0 <= val_fraction < 1.0 - test_fraction:
        raise ValueError("val_fraction must be in [0, 1 - test_fraction)")
    needed = int(np.ceil(min_train / (1.0 - test_fraction))) + 1
    if len(dataset) < n * needed:
        raise ValueError(f"{dataset.name}: {len(dataset)} samples are too few for {n} institutions")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        shares = np.array_split(rng.permutation(len(dataset)), n)
    elif scheme == "classes":
        shares = _class_shares(dataset.y, n, classes_per_institution, needed, rng)
    else:
        if not alpha > 0:
            raise ValueError("alpha must be positive")
        shares = _dirichlet_shares(dataset.y, n, alpha, needed, rng)
    shards = []
    for i, share in enumerate(shares):
        share = rng.permutation(share)
        n_test = max(1, round(len(share) * test_fraction))
        n_val = round(len(share) * val_fraction)
        val = dataset.subset(np.sort(share[n_test : n_test + n_val]), f"{dataset.name}/inst{i}/val")
        shards.append(
            Shard(
                i,
                dataset.subset(np.sort(share[n_test + n_val :]), f"{dataset.name}/inst{i}/train"),
                dataset.subset(np.sort(share[:n_test]), f"{dataset.name}/inst{i}/test"),
                val if n_val else None,
            )
        )
    return shards


def _class_shares(y: np.ndarray, n: int, per: int, needed: int, rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(y)
    if not 1 <= per <= len(classes):
        raise ValueError(f"classes per institution must be in 1..{len(classes)}")
    order = rng.permutation(classes)
    held = [[order[(i * per + j) % len(order)] for j in range(per)] for i in range(n)]
    holders: dict[int, list[int]] = {}
    for i, ks in enumerate(held):
        for k in ks:
            holders.setdefault(int(k), []).append(i)
    buckets: list[list[np.ndarray]] = [[] for _ in range(n)]
    for k, who in holders.items():
        for i, part in zip(who, np.array_split(rng.permutation(np.flatnonzero(y == k)), len(who)), strict=True):
            buckets[i].append(part)
    shares = [np.concatenate(b) for b in buckets]
    if min(len(s) for s in shares) < needed:
        raise ValueError(f"{per} classes per institution leave some institution fewer than {needed} samples")
    return shares


def _dirichlet_shares(y: np.ndarray, n: int, alpha: float, needed: int, rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(y)
    for _ in range(1000):
        buckets: list[list[np.ndarray]] = [[] for _ in range(n)]
        for k in classes:
            members = rng.permutation(np.flatnonzero(y == k))
            proportions = rng.dirichlet(np.full(n, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(int)
            for i, part in enumerate(np.split(members, cuts)):
                buckets[i].append(part)
        shares = [np.concatenate(b) for b in buckets]
        if min(len(s) for s in shares) >= needed:
            return shares
    raise ValueError(f"could not draw a Dirichlet({alpha}) split giving every institution {needed} samples")


def pooled(parts: list[Dataset], name: str) -> Dataset:
    """Concatenate data sets (the centralised baseline's training set, the union of local tests)."""
    first = parts[0]
    return Dataset(
        name,
        np.concatenate([p.X for p in parts]),
        np.concatenate([p.y for p in parts]),
        first.num_classes,
        first.class_names,
    )
