"""CIFAR-10/100 through torchvision and the generic npz dataset, on the real CIFAR-10
subset in ../shared/data (4,000 train / 1,000 test images of data_batch_1 / test_batch)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torchvision import datasets

from benchharness import BenchError
from benchharness.plugins import get_registry
from benchharness_plugins.datasets_cifar import (
    CIFAR10,
    CIFAR10_STATS,
    CIFAR100,
    CIFAR_DATASETS,
    Npz,
    images_to_tensor,
)

SUBSET = "cifar10-subset/cifar10_train4000_test1000.npz"


@pytest.fixture(scope="module")
def subset_path(data_dir) -> Path:
    path = data_dir / SUBSET
    if not path.is_file():
        pytest.fail(f"the CIFAR-10 subset is not at {path}; set BENCH_DATA_DIR")
    return path


@pytest.fixture(scope="module")
def raw(subset_path) -> dict[str, np.ndarray]:
    with np.load(subset_path) as archive:
        return {key: archive[key] for key in archive.files}


def _npz(data_dir, **options):
    return Npz(Npz.Options(path=SUBSET, **options)).load(data_dir)


# --------------------------------------------------------------------------- npz
def test_npz_loads_the_subset_as_nchw_in_unit_range(data_dir, raw):
    d = _npz(data_dir, normalize="none")
    assert d.train_x.shape == (4000, 3, 32, 32) and d.test_x.shape == (1000, 3, 32, 32)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.num_classes == 10 and d.input_shape == (3, 32, 32)
    assert torch.equal(d.train_y, torch.from_numpy(raw["y_train"].astype(np.int64)))
    assert torch.equal(d.test_y, torch.from_numpy(raw["y_test"].astype(np.int64)))
    # pixel (image i, row h, column w, channel c) of the NHWC array, by explicit indexing
    for i, h, w, c in [(0, 0, 0, 0), (17, 5, 31, 2), (3999, 31, 0, 1)]:
        assert d.train_x[i, c, h, w].item() == pytest.approx(raw["x_train"][i, h, w, c] / 255.0)
    assert d.test_x[999, 1, 7, 9].item() == pytest.approx(raw["x_test"][999, 7, 9, 1] / 255.0)
    assert d.train_x.min() >= 0.0 and d.train_x.max() <= 1.0


def test_npz_channel_normalisation_uses_the_training_statistics(data_dir, raw):
    d = _npz(data_dir)
    assert Npz.Options(path="x").normalize == "channel"
    means = d.train_x.double().mean(dim=(0, 2, 3))
    stds = d.train_x.double().std(dim=(0, 2, 3))
    torch.testing.assert_close(means, torch.zeros(3, dtype=torch.float64), atol=1e-5, rtol=0)
    torch.testing.assert_close(stds, torch.ones(3, dtype=torch.float64), atol=1e-5, rtol=0)
    # The test split uses the training statistics (float64 reference).
    x = raw["x_train"].astype(np.float64) / 255.0
    mean, std = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2), ddof=1)
    ref = (raw["x_test"].astype(np.float64) / 255.0 - mean) / std
    np.testing.assert_allclose(d.test_x.permute(0, 2, 3, 1).numpy(), ref, atol=1e-5)
    # This real CIFAR-10 sample has (nearly) the published full-training-set statistics.
    np.testing.assert_allclose(mean, CIFAR10_STATS[0], atol=0.01)
    np.testing.assert_allclose(std, CIFAR10_STATS[1], atol=0.01)


def test_npz_given_statistics_and_half(data_dir):
    plain = _npz(data_dir, normalize="none")
    given = _npz(data_dir, mean=list(CIFAR10_STATS[0]), std=list(CIFAR10_STATS[1]))
    mean = torch.tensor(CIFAR10_STATS[0]).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STATS[1]).view(1, 3, 1, 1)
    torch.testing.assert_close(given.test_x, (plain.test_x - mean) / std)
    half = _npz(data_dir, normalize="half")
    torch.testing.assert_close(half.train_x, plain.train_x * 2 - 1)


def _write(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_other_layouts_and_absolute_paths(tmp_path):
    rng = np.random.default_rng(0)
    nchw = rng.random((6, 2, 5, 4)).astype(np.float32)
    path = _write(
        tmp_path / "f.npz",
        x_train=nchw,
        y_train=np.array([0, 1, 2, 0, 1, 2]),
        x_test=nchw[:2],
        y_test=np.array([2, 2]),
    )
    d = Npz(Npz.Options(path=str(path), layout="nchw", normalize="none")).load(Path("elsewhere"))
    assert torch.equal(d.train_x, torch.from_numpy(nchw)) and d.num_classes == 3
    grey = (rng.random((4, 5, 5)) * 255).astype(np.uint8)
    path = _write(
        tmp_path / "g.npz", x_train=grey, y_train=np.arange(4), x_test=grey, y_test=np.arange(4)
    )
    d = Npz(Npz.Options(path="g.npz", normalize="none", num_classes=7)).load(tmp_path)
    assert d.train_x.shape == (4, 1, 5, 5) and d.num_classes == 7
    assert d.train_x[2, 0, 3, 1].item() == pytest.approx(grey[2, 3, 1] / 255)


def test_npz_missing_file_and_missing_array_are_one_line_errors(tmp_path):
    with pytest.raises(BenchError) as info:
        Npz(Npz.Options(path="nope/data.npz")).load(tmp_path)
    assert str(info.value).startswith(f"npz: no file {tmp_path / 'nope' / 'data.npz'} ")
    assert "\n" not in str(info.value)
    x = np.zeros((2, 4, 4, 3), np.uint8)
    _write(tmp_path / "partial.npz", x_train=x, y_train=np.zeros(2, np.int64), x_test=x)
    with pytest.raises(BenchError) as info:
        Npz(Npz.Options(path="partial.npz")).load(tmp_path)
    assert str(info.value) == (
        f"npz: {tmp_path / 'partial.npz'} has no array 'y_test' (needs x_train, y_train, "
        "x_test, y_test; it has x_train, y_train, x_test)"
    )
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(BenchError, match=r"^npz: cannot read .*text\.npz as \.npz"):
        Npz(Npz.Options(path="text.npz")).load(tmp_path)


def test_npz_inconsistent_arrays_are_one_line_errors(tmp_path):
    x = np.zeros((3, 4, 4, 3), np.uint8)
    labels = np.zeros(3, np.int64)
    good = {"x_train": x, "y_train": labels, "x_test": x, "y_test": labels}
    cases = [
        ({"y_train": labels[:2]}, "x_train has 3 samples but y_train 2 labels"),
        (
            {"y_train": np.zeros(3)},
            "y_train must be a 1-D array of integer labels, got shape (3,) of float64",
        ),
        ({"x_test": x[:, :2]}, "x_train samples are (3, 4, 4), x_test samples (3, 2, 4)"),
        ({"y_test": np.array([0, -1, 0])}, "y_test has a negative label (-1)"),
    ]
    for i, (change, expected) in enumerate(cases):
        path = _write(tmp_path / f"case{i}.npz", **{**good, **change})
        with pytest.raises(BenchError) as info:
            Npz(Npz.Options(path=path.name, normalize="none")).load(tmp_path)
        assert str(info.value) == f"npz: {path}: {expected}"
    path = _write(tmp_path / "labels.npz", **{**good, "y_train": np.array([0, 1, 5])})
    with pytest.raises(BenchError) as info:
        Npz(Npz.Options(path=path.name, normalize="none", num_classes=3)).load(tmp_path)
    assert str(info.value) == f"npz: {path}: label 5 is >= num_classes = 3"


def test_npz_options_are_validated():
    with pytest.raises(ValidationError, match="give both mean and std"):
        Npz.Options(path="x.npz", mean=[0.5, 0.5, 0.5])
    with pytest.raises(ValidationError, match="every std must be > 0"):
        Npz.Options(path="x.npz", mean=[0.5], std=[0.0])
    with pytest.raises(ValidationError):
        Npz.Options()  # path is required


def test_images_to_tensor_keeps_float_values():
    x = np.array([[[[0.25, 2.0]]]], dtype=np.float64)  # N=1, H=1, W=1... NHWC with C=2
    assert images_to_tensor(x).tolist() == [[[[0.25]], [[2.0]]]]


# ------------------------------------------------------------------ torchvision CIFAR
def _fake_cifar10(root: Path, raw: dict[str, np.ndarray]) -> None:
    """torchvision's cifar-10-batches-py layout (pickled CHW rows), filled from the subset."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)

    def dump(name: str, x: np.ndarray, y: np.ndarray) -> None:
        rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rows, "labels": [int(v) for v in y]}, f)

    for i in range(5):
        part = slice(i * 800, (i + 1) * 800)
        dump(f"data_batch_{i + 1}", raw["x_train"][part], raw["y_train"][part])
    dump("test_batch", raw["x_test"], raw["y_test"])
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


def test_cifar10_reads_torchvision_files_as_nchw(tmp_path, monkeypatch, data_dir, raw):
    """Files in torchvision's layout load to the same tensors as the npz of the same
    images: the CHW-row and NHWC conversions agree. (The md5 checks are bypassed: these
    are not the official files.)"""
    _fake_cifar10(tmp_path, raw)
    monkeypatch.setattr(datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(datasets.cifar, "check_integrity", lambda *a, **k: True)
    d = CIFAR10(CIFAR10.Options(normalize="none")).load(tmp_path)
    reference = _npz(data_dir, normalize="none")
    assert torch.equal(d.train_x, reference.train_x) and torch.equal(d.test_y, reference.test_y)
    assert d.num_classes == 10 and d.train_y.dtype == torch.int64
    normalised = CIFAR10().load(tmp_path)
    mean = torch.tensor(CIFAR10_STATS[0]).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STATS[1]).view(1, 3, 1, 1)
    torch.testing.assert_close(normalised.test_x, (reference.test_x - mean) / std)


@pytest.mark.parametrize(
    ("cls", "tv", "folder", "archive"),
    [
        (CIFAR10, datasets.CIFAR10, "cifar-10-batches-py", "cifar-10-python.tar.gz"),
        (CIFAR100, datasets.CIFAR100, "cifar-100-python", "cifar-100-python.tar.gz"),
    ],
)
def test_cifar_missing_files_is_one_line_error(tmp_path, monkeypatch, cls, tv, folder, archive):
    attempts = []

    def no_download(self):
        attempts.append(self.root)
        raise RuntimeError("Error downloading:\n<urlopen error network disabled in tests>\n")

    monkeypatch.setattr(tv, "download", no_download)
    with pytest.raises(BenchError) as info:
        cls().load(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"{cls.name}: no {cls.title} files in {tmp_path / folder} and the download failed "
        f"(<urlopen error network disabled in tests>); put the extracted python version "
        f"({archive} from https://www.cs.toronto.edu/~kriz/cifar.html) there or set "
        "BENCH_DATA_DIR"
    )
    assert len(attempts) == 1


def test_registered_and_documented():
    registry = get_registry()
    for cls in CIFAR_DATASETS:
        assert registry.get("dataset", cls.name).cls is cls
        assert cls.version == "1" and cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name} has no description"
