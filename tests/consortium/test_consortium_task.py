"""A site's data is checked against the plan's task: shape, labels, minimum samples, each refused
with one line that carries the numbers; DICOM slices are resized to the task's input shape and
their label names mapped to the task's label order."""

from __future__ import annotations

import functools
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from fedledger.fl.task import SiteData, Task, TaskMismatch, load_for_task, site_shard

DIGITS_TASK = Task((1, 8, 8), tuple(str(i) for i in range(10)), "cnn", (8, 16), min_samples=20)


@functools.cache
def dicom_files() -> list[Path]:
    import pydicom
    from pydicom.data import get_testdata_files

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(get_testdata_files("*.dcm")):
            try:
                pydicom.dcmread(path).pixel_array  # noqa: B018
            except Exception:
                continue
            out.append(Path(path))
    return out


def dicom_site(folder: Path, count: int, labels: list[str]) -> SiteData:
    folder.mkdir()
    files = dicom_files()[:count]
    assert len(files) == count
    rows = []
    for i, path in enumerate(files):
        shutil.copyfile(path, folder / path.name)
        rows.append(f"{path.name},{labels[i % len(labels)]}")
    (folder / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return SiteData("dicom", str(folder))


def test_dicom_slices_are_resized_to_the_task_and_labels_follow_the_tasks_order(tmp_path: Path) -> None:
    task = Task((1, 8, 8), ("normal", "nodule", "mass"), "cnn", (8,), min_samples=10)
    data = load_for_task(dicom_site(tmp_path / "ct", 30, ["mass", "normal"]), task)
    assert data.X.shape == (30, 1, 8, 8) and data.num_classes == 3
    assert set(np.unique(data.y)) == {0, 2}  # "normal" is 0 and "mass" is 2 in the task, whatever the CSV's order
    assert float(data.X.min()) >= 0.0 and float(data.X.max()) <= 1.0
    shard = site_shard(dicom_site(tmp_path / "ct2", 30, ["mass", "normal"]), task)
    assert len(shard.train) + len(shard.test) == 30 and len(shard.train) >= 10


def test_too_few_samples_say_how_many_and_the_minimum(tmp_path: Path) -> None:
    site = dicom_site(tmp_path / "ct", 8, ["1", "2"])
    with pytest.raises(TaskMismatch, match=r"8 samples are too few: the task needs at least 20 training samples"):
        site_shard(site, DIGITS_TASK)


def test_a_label_outside_the_task_is_named_with_the_fix(tmp_path: Path) -> None:
    site = dicom_site(tmp_path / "ct", 30, ["3", "XR"])
    expected = r"label\(s\) 'XR' are not in the task's label set .*add them to \[task\] labels"
    with pytest.raises(TaskMismatch, match=expected):
        site_shard(site, DIGITS_TASK)


def test_a_shape_that_does_not_fit_is_refused_with_both_shapes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("train", "val", "test"):
        arrays[f"{split}_images"] = rng.integers(0, 255, size=(20, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 10, size=(20, 1))
    np.savez(tmp_path / "scans.npz", **arrays)
    with pytest.raises(TaskMismatch, match=r"shape \(1, 28, 28\), the task's input shape is \(1, 8, 8\)"):
        site_shard(SiteData("npz", str(tmp_path / "scans.npz")), DIGITS_TASK)


def test_a_missing_folder_and_a_colour_task_for_dicom_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TaskMismatch, match="no DICOM folder there"):
        load_for_task(SiteData("dicom", str(tmp_path / "absent")), DIGITS_TASK)
    colour = Task((3, 8, 8), DIGITS_TASK.labels, "cnn", (8,))
    (tmp_path / "ct").mkdir()
    with pytest.raises(TaskMismatch, match=r"DICOM slices become 1 x S x S images; the task wants \(3, 8, 8\)"):
        load_for_task(SiteData("dicom", str(tmp_path / "ct")), colour)


def test_a_builtin_source_split_too_thin_says_so(tmp_path: Path) -> None:
    task = Task((64,), DIGITS_TASK.labels, "mlp", (8,), min_samples=20)
    with pytest.raises(TaskMismatch, match="shape"):
        site_shard(SiteData("builtin", "digits"), task)
    thin = Task((1, 8, 8), DIGITS_TASK.labels, "cnn", (8,), min_samples=500)
    with pytest.raises(TaskMismatch, match=r"1797 samples split 4 ways are too few: the task needs at least 500"):
        site_shard(SiteData("builtin", "digits", partitions=4), thin)
