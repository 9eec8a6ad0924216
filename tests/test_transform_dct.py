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
    assert (DCT.version, Identity.version) == ("3", "1")
    for cls in (DCT, Identity):
        assert cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name} has no description"


# ------------------------------------------------------- stored bits and FLOPs


@pytest.mark.parametrize(
    ("kept", "total", "bits"),
    [
        (235, 784, 784),  # β = 0.3 on 28×28: a list would take 235 · 10 = 2350 bits
        (78, 784, 780),  # β = 0.1: the list (78 · 10) is cheaper than the mask
        (79, 784, 784),  # 79 · 10 = 790 > 784
        (784, 784, 0),  # everything kept: nothing to say
        (16, 64, 64),  # 16 · 6 = 96 > 64
        (1, 1, 0),
    ],
)
def test_position_bits_by_hand(kept, total, bits):
    assert transforms.position_bits(kept, total) == bits


@pytest.mark.parametrize("output", ["coefficients", "reconstruction"])
def test_stored_bits_of_magnitude_and_lowfreq_by_hand(output):
    x = torch.rand(6, 1, 28, 28)
    data = _data(x)
    assert data.stored_input_bits == 784 * 32  # raw: 32-bit floats
    magnitude = _dct(ratio=0.3, output=output).apply(data)
    lowfreq = _dct(ratio=0.3, selection="lowfreq", output=output).apply(data)
    # k = 235 values of 32 bits; magnitude also says which: min(235 · ⌈log2 784⌉, 784) bits
    assert magnitude.input_values == lowfreq.input_values == 235
    assert magnitude.stored_input_bits == 235 * 32 + 784 == 8304
    assert lowfreq.stored_input_bits == 235 * 32 == 7520
    # β = 0.1: k = 78 positions of 10 bits (780) are cheaper than the mask
    assert _dct(ratio=0.1, output=output).apply(data).stored_input_bits == 78 * 32 + 78 * 10
    # everything kept: no positions
    assert _dct(ratio=1.0, output=output).apply(data).stored_input_bits == 784 * 32


def test_stored_bits_count_every_channel():
    x = torch.randn(5, 3, 8, 8)
    out = _dct(ratio=0.5).apply(_data(x, 1))
    # per channel: k = 32 values, positions min(32 · 6, 64) = 64 bits
    assert out.stored_input_bits == 3 * (32 * 32 + 64) == 3264


def test_flops_by_hand():
    # 28×28, one channel: forward D_H @ x @ D_Wᵀ = 28·28·28 + 28·28·28 = 43,904 MACs;
    # the inverse as many again: 87,808 MACs (issue 13's ≈ 88k), 2 FLOPs each.
    assert _dct(output="reconstruction").flops((1, 28, 28)) == 2 * 87_808 == 175_616
    assert _dct(output="coefficients").flops((1, 28, 28)) == 2 * 43_904
    # rectangular, several channels: 3 · (5·5·7 + 5·7·7) MACs forward
    assert _dct(output="coefficients").flops((3, 5, 7)) == 2 * 3 * (175 + 245)
    assert Identity().flops((1, 28, 28)) == 0


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 5, 7)])
@pytest.mark.parametrize("output", ["coefficients", "reconstruction"])
@pytest.mark.parametrize("selection", ["magnitude", "lowfreq"])
def test_flops_match_flop_counter_mode(shape, output, selection):
    from torch.utils.flop_counter import FlopCounterMode

    dct = _dct(ratio=0.3, selection=selection, output=output)
    x = torch.rand(1, *shape)
    with FlopCounterMode(display=False) as counter:  # the plugin's own computation
        dct._transform(x, dct.kept(*shape[-2:]))
    assert dct.flops(shape) == counter.get_total_flops() > 0


MNIST_ROOT = "/work/shared/data"


@pytest.fixture(scope="module")
def mnist_images() -> torch.Tensor:
    """300 real MNIST test images, float32, normalised as the `mnist` plugin's default."""
    datasets = pytest.importorskip("torchvision.datasets")
    try:
        ds = datasets.MNIST(root=MNIST_ROOT, train=False, download=False)
    except RuntimeError:
        pytest.skip(f"no MNIST files under {MNIST_ROOT}")
    x = ds.data[:300].to(torch.float32).div(255.0).unsqueeze(1)
    return (x - 0.5) / 0.5


def test_float32_dct_on_real_mnist_matches_float64_scipy(mnist_images):
    x = mnist_images
    assert x.dtype == torch.float32 and x.shape == (300, 1, 28, 28)
    ref = scipy.fft.dctn(x.double().numpy(), axes=(-2, -1), norm="ortho")
    tol = 3e-5  # |DC| ≤ 28, whose float32 ulp is 1.9e-6; measured error ≈ 7e-6

    # every coefficient (β = 1)
    full = _dct(ratio=1.0, output="coefficients").apply(_data(x, 0)).train_x
    assert full.dtype == torch.float32
    np.testing.assert_allclose(full.numpy(), ref, atol=tol, rtol=0)

    # top-k by magnitude (β = 0.3): a valid top-k of the float64 coefficients (a swap only
    # between magnitudes within tolerance of each other), values equal to the reference
    k = 235
    kept = _dct(ratio=0.3, output="coefficients").apply(_data(x, 0)).train_x.numpy()
    kept = kept.reshape(300, 784)
    ref_flat = ref.reshape(300, 784)
    mask = kept != 0
    assert (mask.sum(axis=1) == k).all()
    kth = -np.sort(-np.abs(ref_flat), axis=1)[:, k - 1]
    assert (np.where(mask, np.abs(ref_flat), np.inf).min(axis=1) >= kth - tol).all()
    assert (np.where(mask, 0.0, np.abs(ref_flat)).max(axis=1) <= kth + tol).all()
    np.testing.assert_allclose(kept[mask], ref_flat[mask], atol=tol, rtol=0)

    # the reconstruction: float64 inverse DCT of the same kept coefficients
    recon = _dct(ratio=0.3).apply(_data(x, 0)).train_x.numpy()
    expected = scipy.fft.idctn(
        np.where(mask, ref_flat, 0.0).reshape(x.shape), axes=(-2, -1), norm="ortho"
    )
    np.testing.assert_allclose(recon, expected, atol=tol, rtol=0)
