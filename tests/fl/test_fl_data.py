"""Data sources (sklearn, DICOM folder + CSV, MedMNIST .npz) and the partitioners."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from fedledger.fl import DatasetError, load_dataset, partition
from fedledger.fl.data import Dataset


def test_builtin_sources():
    bc = load_dataset("breast_cancer")
    assert bc.X.shape == (569, 30) and bc.X.dtype == np.float32 and bc.num_classes == 2
    assert abs(float(bc.X.mean())) < 1e-4  # standardised
    digits = load_dataset("digits")
    assert digits.X.shape == (1797, 1, 8, 8) and digits.num_classes == 10
    assert digits.X.min() >= 0.0 and digits.X.max() <= 1.0


def _indices_of(ds: Dataset, parts) -> list[np.ndarray]:
    # map rows back to original indices through their exact feature vectors
    lookup = {row.tobytes(): i for i, row in enumerate(ds.X.reshape(len(ds), -1))}
    return [np.array([lookup[r.tobytes()] for r in p.X.reshape(len(p), -1)]) for p in parts]


@pytest.mark.parametrize(("scheme", "alpha"), [("iid", 1.0), ("dirichlet", 0.1), ("dirichlet", 1.0)])
def test_partition_is_a_disjoint_cover_with_local_tests(scheme, alpha):
    ds = load_dataset("breast_cancer")
    shards = partition(ds, 5, scheme, alpha, seed=3)
    assert [s.institution for s in shards] == list(range(5))
    idx = _indices_of(ds, [p for s in shards for p in (s.train, s.test)])
    flat = np.concatenate(idx)
    assert len(flat) == len(ds) and len(np.unique(flat)) == len(ds)
    for s in shards:
        assert len(s.train) >= 8 and len(s.test) >= 1
        assert np.array_equal(ds.y[_indices_of(ds, [s.train])[0]], s.train.y)
        assert len(s.test) == pytest.approx(0.2 * (len(s.train) + len(s.test)), abs=1)


def test_partition_is_seeded():
    ds = load_dataset("digits")
    a = partition(ds, 4, "dirichlet", 0.5, seed=9)
    b = partition(ds, 4, "dirichlet", 0.5, seed=9)
    c = partition(ds, 4, "dirichlet", 0.5, seed=10)
    assert all(
        np.array_equal(x.train.y, y.train.y) and np.array_equal(x.test.X, y.test.X) for x, y in zip(a, b, strict=True)
    )
    assert any(
        len(x.train) != len(y.train) or not np.array_equal(x.train.y, y.train.y) for x, y in zip(a, c, strict=True)
    )


def _label_skew(shards, classes):
    """Mean total-variation distance between each institution's label mix and the overall mix."""
    all_y = np.concatenate([s.train.y for s in shards])
    overall = np.bincount(all_y, minlength=classes) / len(all_y)
    return np.mean(
        [0.5 * np.abs(np.bincount(s.train.y, minlength=classes) / len(s.train) - overall).sum() for s in shards]
    )


def test_smaller_alpha_means_stronger_label_skew():
    ds = load_dataset("digits")
    skews = {
        a: np.mean([_label_skew(partition(ds, 5, "dirichlet", a, seed=s), 10) for s in range(3)])
        for a in (0.1, 1.0, 100.0)
    }
    iid = np.mean([_label_skew(partition(ds, 5, "iid", seed=s), 10) for s in range(3)])
    assert skews[0.1] > skews[1.0] > skews[100.0]
    assert skews[0.1] > 0.4 and iid < 0.1


def test_partition_refuses_bad_arguments():
    ds = load_dataset("breast_cancer")
    for kwargs in (
        {"n": 0},
        {"n": 5, "scheme": "shards"},
        {"n": 5, "scheme": "dirichlet", "alpha": 0.0},
        {"n": 100},
        {"n": 5, "test_fraction": 1.0},
    ):
        with pytest.raises(ValueError):
            partition(ds, **kwargs)


# --- DICOM: the .dcm files shipped inside pydicom's wheel, with a labels CSV written here ---------

_DICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "examples_rgb_color.dcm", "MR_small_implicit.dcm"]


@pytest.fixture
def dicom_folder(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in _DICOM_FILES:
        shutil.copy(get_testdata_file(name), folder / name)
    (folder / "labels.csv").write_text(
        "file,label\nCT_small.dcm,tumour\nMR_small.dcm,healthy\nexamples_rgb_color.dcm,healthy\nMR_small_implicit.dcm,tumour\n"
    )
    return folder


def test_dicom_folder_with_labels_csv(dicom_folder):
    ds = load_dataset(dicom_folder, image_size=16)
    assert ds.X.shape == (4, 1, 16, 16) and ds.X.dtype == np.float32
    assert ds.class_names == ("healthy", "tumour")
    assert ds.y.tolist() == [1, 0, 0, 1]
    assert ds.X.min() >= 0.0 and ds.X.max() <= 1.0
    import pydicom

    # independent check: the CT image's brightest pixel stays the brightest region after scaling
    raw = pydicom.dcmread(dicom_folder / "CT_small.dcm").pixel_array.astype(np.float64)
    assert raw.shape == (128, 128)
    assert ds.X[0].std() > 0


def test_dicom_errors_name_the_file(dicom_folder):
    (dicom_folder / "labels.csv").write_text("file,label\nmissing.dcm,1\n")
    with pytest.raises(DatasetError, match=r"missing\.dcm"):
        load_dataset(dicom_folder)
    (dicom_folder / "labels.csv").write_text("file,label\n../../etc/passwd,1\n")
    with pytest.raises(DatasetError, match=r"outside"):
        load_dataset(dicom_folder)
    (dicom_folder / "labels.csv").write_text("name,class\nCT_small.dcm,1\n")
    with pytest.raises(DatasetError, match=r"labels\.csv"):
        load_dataset(dicom_folder)
    (dicom_folder / "labels.csv").unlink()
    with pytest.raises(DatasetError, match=r"labels\.csv"):
        load_dataset(dicom_folder)


# --- MedMNIST .npz layout -------------------------------------------------------------------------


def _write_medmnist(path, rgb=False):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 20), ("val", 5), ("test", 7)):
        shape = (n, 28, 28, 3) if rgb else (n, 28, 28)
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 4, size=(n, 1)).astype(np.uint8)
    arrays["train_labels"][0, 0] = 3
    np.savez(path, **arrays)
    return arrays


@pytest.mark.parametrize("rgb", [False, True])
def test_medmnist_npz_layout(tmp_path, rgb):
    arrays = _write_medmnist(tmp_path / "tinymnist.npz", rgb)
    ds = load_dataset(tmp_path / "tinymnist.npz")
    assert ds.X.shape == (32, 3 if rgb else 1, 28, 28)
    assert ds.num_classes == 4
    assert ds.y.tolist() == np.concatenate([arrays[f"{s}_labels"][:, 0] for s in ("train", "val", "test")]).tolist()
    first = arrays["train_images"][0]
    expected = (np.transpose(first, (2, 0, 1)) if rgb else first[None]) / 255.0
    assert np.allclose(ds.X[0], expected)


def test_medmnist_missing_split_and_pickled_arrays_refused(tmp_path):
    np.savez(tmp_path / "bad.npz", train_images=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DatasetError, match=r"bad\.npz"):
        load_dataset(tmp_path / "bad.npz")
    np.savez(
        tmp_path / "obj.npz",
        train_images=np.array([{"a": 1}], dtype=object),
        train_labels=np.zeros(1),
        val_images=np.zeros(1),
        val_labels=np.zeros(1),
        test_images=np.zeros(1),
        test_labels=np.zeros(1),
    )
    with pytest.raises(DatasetError, match=r"obj\.npz"):
        load_dataset(tmp_path / "obj.npz")


def test_unknown_source_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"nope"):
        load_dataset("nope")


def test_validation_split_is_carved_from_training_and_leaves_test_unchanged():
    ds = load_dataset("digits")
    plain = partition(ds, 5, "dirichlet", 0.5, seed=4)
    with_val = partition(ds, 5, "dirichlet", 0.5, seed=4, val_fraction=0.15)
    for a, b in zip(plain, with_val, strict=True):
        assert np.array_equal(a.test.X, b.test.X) and a.val is None
        assert b.val is not None and len(b.val) + len(b.train) == len(a.train)
        assert len(b.val) == round(0.15 * (len(a.train) + len(a.test)))


def test_pathological_split_gives_each_institution_two_classes():
    ds = load_dataset("digits")
    for n in (5, 20):
        shards = partition(ds, n, "classes", seed=1)
        held = [set(np.unique(np.concatenate([s.train.y, s.test.y])).tolist()) for s in shards]
        assert all(len(h) == 2 for h in held)
        assert set().union(*held) == set(range(10))
    with pytest.raises(ValueError, match="classes per institution"):
        partition(ds, 5, "classes", classes_per_institution=11)
