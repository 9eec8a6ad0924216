"""Datasets: real MNIST from the shared data dir, bundled digits, the missing-data error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from torchvision import datasets

from benchharness import BenchError
from benchharness.plugins import get_registry
from benchharness_plugins.datasets import MNIST, Digits


@pytest.fixture(scope="module")
def mnist_raw(data_dir):
    """MNIST in [0, 1] (normalize = none), loaded once for the module."""
    return MNIST(MNIST.Options(normalize="none")).load(data_dir)


def test_mnist_shapes_and_labels(mnist_raw):
    d = mnist_raw
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert d.train_x.dtype == torch.float32 and d.train_y.dtype == torch.int64
    assert d.train_y.shape == (60000,) and d.test_y.shape == (10000,)
    assert d.num_classes == 10 and d.input_shape == (1, 28, 28)
    for y in (d.train_y, d.test_y):
        assert torch.equal(y.unique(), torch.arange(10))
    assert d.train_x.min() == 0.0 and d.train_x.max() == 1.0
    # The well-known MNIST training statistics.
    assert d.train_x.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert d.train_x.std().item() == pytest.approx(0.3081, abs=1e-4)


def test_mnist_half_normalisation_is_the_default(data_dir, mnist_raw):
    assert MNIST.Options().normalize == "half"
    d = MNIST().load(data_dir)
    assert d.train_x.min() == -1.0 and d.train_x.max() == 1.0
    assert d.train_x.mean().item() == pytest.approx((0.1307 - 0.5) / 0.5, abs=1e-3)
    torch.testing.assert_close(d.test_x, (mnist_raw.test_x - 0.5) / 0.5)
    assert torch.equal(d.train_y, mnist_raw.train_y)


def test_mnist_statistics_normalisation(data_dir):
    d = MNIST(MNIST.Options(normalize="mnist")).load(data_dir)
    assert d.train_x.mean().item() == pytest.approx(0.0, abs=1e-3)
    assert d.train_x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_mnist_missing_files_is_one_line_error(tmp_path: Path, monkeypatch):
    attempts = []

    def no_download(self):
        attempts.append(self.raw_folder)
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\n"
            "Tried https://example.invalid/, got:\n<urlopen error network disabled in tests>\n"
        )

    monkeypatch.setattr(datasets.MNIST, "download", no_download)
    with pytest.raises(BenchError) as info:
        MNIST().load(tmp_path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"mnist: no MNIST files in {tmp_path / 'MNIST' / 'raw'} ")
    assert "(<urlopen error network disabled in tests>)" in message
    assert message.endswith("put the four idx files there or set BENCH_DATA_DIR")
    assert len(attempts) == 1


def test_digits_split_sizes_and_values():
    d = Digits().load(Path("unused"))
    assert d.train_x.shape == (1437, 1, 8, 8) and d.test_x.shape == (360, 1, 8, 8)
    assert d.train_x.dtype == torch.float32 and d.test_y.dtype == torch.int64
    assert d.train_x.min() == -1.0 and d.train_x.max() == 1.0
    # Stratified: every class is in both splits.
    assert torch.equal(d.test_y.unique(), torch.arange(10))
    assert torch.equal(d.train_y.unique(), torch.arange(10))
    raw = Digits(Digits.Options(normalize="none")).load(Path("unused"))
    assert raw.train_x.min() == 0.0 and raw.train_x.max() == 1.0
    torch.testing.assert_close(d.train_x, (raw.train_x - 0.5) / 0.5)


def test_digits_split_is_deterministic():
    a = Digits().load(Path("unused"))
    b = Digits().load(Path("unused"))
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.train_y, b.train_y)
    c = Digits(Digits.Options(split_seed=1)).load(Path("unused"))
    assert not torch.equal(a.test_x, c.test_x)
    # The same 1,797 images, only assigned differently.
    total = a.train_x.sum() + a.test_x.sum()
    assert (c.train_x.sum() + c.test_x.sum()).item() == pytest.approx(total.item(), rel=1e-6)


def test_digits_test_fraction():
    d = Digits(Digits.Options(test_fraction=0.5)).load(Path("unused"))
    assert len(d.test_y) + len(d.train_y) == 1797
    assert abs(len(d.test_y) - 898.5) <= 1
    with pytest.raises(ValidationError, match=r"must be in \(0, 1\), got 1.0"):
        Digits.Options(test_fraction=1.0)


def test_normalize_choices_are_validated():
    with pytest.raises(ValidationError):
        MNIST.Options(normalize="imagenet")


def test_registered_and_documented():
    registry = get_registry()
    for cls in (MNIST, Digits):
        assert registry.get("dataset", cls.name).cls is cls
        assert cls.version == "1" and cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name} has no description"
