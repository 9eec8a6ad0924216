"""The DCT transform against scipy's float64 DCT and hand-written zig-zag order."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch
from pydantic import ValidationError

import benchharness_plugins.transforms as transforms
from benchharness import BenchError, Data
from benchharness_plugins.transforms import DCT, Identity, dct2, dct_matrix, idct2, zigzag_order


def _data(x: torch.Tensor, n_test: int = 4) -> Data:
    y = torch.zeros(x.shape[0], dtype=torch.int64)
    return Data(x[n_test:], y[n_test:], x[:n_test], y[:n_test], num_classes=10)


def _dct(**options) -> DCT:
    return DCT(DCT.Options(**options))


@pytest.fixture
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 1, 28, 28, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("n", [4, 8, 28])
def test_dct_matrix_is_orthonormal(n):
    d = dct_matrix(n)
    assert d.dtype == torch.float64
    torch.testing.assert_close(d @ d.T, torch.eye(n, dtype=torch.float64), atol=1e-12, rtol=0)


def test_dct_matrix_matches_scipy_1d():
    d = dct_matrix(8).numpy()
    np.testing.assert_allclose(d, scipy.fft.dct(np.eye(8), axis=0, norm="ortho"), atol=1e-12)


def test_dct2_matches_scipy_dctn(images):
    coef = dct2(images)
    ref = scipy.fft.dctn(images.numpy(), axes=(-2, -1), norm="ortho")
    np.testing.assert_allclose(coef.numpy(), ref, atol=1e-10)
    torch.testing.assert_close(idct2(coef), images, atol=1e-10, rtol=0)


def test_dct2_rectangular_matches_scipy():
    x = torch.randn(3, 2, 5, 7, dtype=torch.float64)
    ref = scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho")
    np.testing.assert_allclose(dct2(x).numpy(), ref, atol=1e-10)


def test_magnitude_keeps_exactly_the_k_largest(images):
    out = _dct(ratio=0.3, output="coefficients").apply(_data(images))
    k = math.floor(0.3 * 784)
    assert k == 235
    ref = scipy.fft.dctn(images.numpy(), axes=(-2, -1), norm="ortho").reshape(24, 784)
    got = torch.cat([out.test_x, out.train_x]).reshape(24, 784).numpy()
    for row_ref, row_got in zip(ref, got, strict=True):
        kept = np.flatnonzero(row_got)
        assert kept.size == k
        largest = np.argsort(-np.abs(row_ref))[:k]
        assert set(kept) == set(largest)
        np.testing.assert_allclose(row_got[kept], row_ref[kept], atol=1e-10)


def test_magnitude_reconstruction_is_inverse_of_masked_coefficients(images):
    out = _dct(ratio=0.1).apply(_data(images))
    ref = scipy.fft.dctn(images.numpy(), axes=(-2, -1), norm="ortho").reshape(24, 784)
    k = math.floor(0.1 * 784)
    thresh = -np.sort(-np.abs(ref), axis=1)[:, k - 1 : k]
    masked = np.where(np.abs(ref) >= thresh, ref, 0.0).reshape(images.shape)
    expected = scipy.fft.idctn(masked, axes=(-2, -1), norm="ortho")
    got = torch.cat([out.test_x, out.train_x]).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)


def test_ratio_one_reconstructs_the_input():
    x = torch.rand(10, 1, 28, 28)  # float32: the dtype the harness uses
    out = _dct(ratio=1.0).apply(_data(x))
    assert out.train_x.dtype == torch.float32
    torch.testing.assert_close(out.train_x, x[4:], atol=1e-5, rtol=0)
    assert out.input_values == 784


def test_zigzag_order_4x4_by_hand():
    # JPEG zig-zag position of each cell of a 4×4 block, written out by hand.
    position = torch.tensor(
        [
            [0, 1, 5, 6],
            [2, 4, 7, 12],
            [3, 8, 11, 13],
            [9, 10, 14, 15],
        ]
    )
    assert zigzag_order(4, 4).tolist() == position.flatten().argsort().tolist()


def test_zigzag_order_8x8_starts_like_jpeg():
    # (row, col) of the first ten JPEG zig-zag positions.
    first = [(0, 0), (0, 1), (1, 0), (2, 0), (1, 1), (0, 2), (0, 3), (1, 2), (2, 1), (3, 0)]
    assert zigzag_order(8, 8)[:10].tolist() == [r * 8 + c for r, c in first]
    assert sorted(zigzag_order(5, 3).tolist()) == list(range(15))


def test_lowfreq_keeps_the_first_k_zigzag_coefficients():
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64)
    out = _dct(ratio=0.25, selection="lowfreq", output="coefficients").apply(_data(x, 2))
    # k = 4: the DC term, (0,1), (1,0), (2,0)
    expected_mask = torch.zeros(4, 4, dtype=torch.bool)
    for r, c in [(0, 0), (0, 1), (1, 0), (2, 0)]:
        expected_mask[r, c] = True
    ref = torch.from_numpy(scipy.fft.dctn(x.numpy(), axes=(-2, -1), norm="ortho"))
    expected = torch.where(expected_mask, ref, torch.zeros((), dtype=torch.float64))
    torch.testing.assert_close(torch.cat([out.test_x, out.train_x]), expected, atol=1e-12, rtol=0)


def test_per_channel_selection_and_input_values():
    x = torch.randn(5, 3, 8, 8, dtype=torch.float64)
    out = _dct(ratio=0.5, output="coefficients").apply(_data(x, 1))
    k = 32
    nonzero = (out.train_x != 0).sum(dim=(-2, -1))
    assert (nonzero == k).all()
    assert out.input_values == 3 * k
    assert out.stored_input_values == 96


def test_input_values_and_shapes_on_mnist_like_data():
    x = torch.rand(8, 1, 28, 28)
    out = _dct().apply(_data(x))
    assert out.input_values == math.floor(0.3 * 784) == 235
    assert out.train_x.shape == (4, 1, 28, 28) and out.test_x.shape == (4, 1, 28, 28)
    assert out.train_y is not None and out.num_classes == 10


def test_chunking_does_not_change_the_result(monkeypatch):
    x = torch.randn(11, 1, 8, 8)
    whole = _dct(ratio=0.2).apply(_data(x, 0)).train_x
    monkeypatch.setattr(transforms, "_CHUNK", 3)
    torch.testing.assert_close(_dct(ratio=0.2).apply(_data(x, 0)).train_x, whole)


@pytest.mark.parametrize("ratio", [0.0, 1.5, -0.1])
def test_ratio_out_of_range_is_a_friendly_error(ratio):
    with pytest.raises(ValidationError, match=rf"must be in \(0, 1\], got {ratio}"):
        DCT.Options(ratio=ratio)


def test_ratio_that_keeps_nothing_is_an_error():
    with pytest.raises(BenchError, match="keeps no coefficient of a 8×8 image"):
        _dct(ratio=0.01).apply(_data(torch.rand(6, 1, 8, 8)))


def test_unknown_option_is_rejected():
    with pytest.raises(ValidationError):
        DCT.Options(selection="random")


def test_identity_returns_the_data_unchanged():
    data = _data(torch.rand(6, 1, 8, 8))
    assert Identity().apply(data) is data


def test_plugins_are_documented():
    for cls in (DCT, Identity):
        assert cls.version == "1" and cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name} has no description"
