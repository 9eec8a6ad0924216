"""The chunked, in-place ``dct`` transform against a naive per-image float64 reference."""

from __future__ import annotations

import math

import pytest
import torch

import benchharness_plugins.transforms as transforms
from benchharness import Data
from benchharness_plugins import _dct_kernels
from benchharness_plugins.transforms import DCT, dct_matrix, zigzag_order

N_IMAGES = 300


def _naive(image: torch.Tensor, k: int, selection: str, output: str) -> torch.Tensor:
    """One image (C, H, W), float64, the textbook way: D x Dᵀ, full sort, mask, Dᵀ c D."""
    h, w = image.shape[-2:]
    d_h, d_w = dct_matrix(h), dct_matrix(w)
    coef = (d_h @ image.double() @ d_w.T).reshape(-1, h * w)
    mask = torch.zeros_like(coef)
    for row, mask_row in zip(coef, mask, strict=True):
        if selection == "lowfreq":
            mask_row[zigzag_order(h, w)[:k]] = 1.0
        else:
            mask_row[torch.argsort(row.abs(), descending=True)[:k]] = 1.0
    coef = (coef * mask).reshape(image.shape)
    return d_h.T @ coef @ d_w if output == "reconstruction" else coef


@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("selection", ["magnitude", "lowfreq"])
@pytest.mark.parametrize("output", ["reconstruction", "coefficients"])
def test_fast_path_equals_naive_per_image_float64(monkeypatch, ratio, selection, output):
    # Several chunks, the last one ragged, so chunk boundaries are exercised.
    monkeypatch.setattr(transforms, "_CHUNK", 128)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N_IMAGES, 1, 28, 28, generator=g)  # float32, like the datasets
    y = torch.zeros(N_IMAGES, dtype=torch.int64)
    data = Data(x[40:], y[40:], x[:40], y[:40], num_classes=10)
    out = DCT(DCT.Options(ratio=ratio, selection=selection, output=output)).apply(data)
    got = torch.cat([out.test_x, out.train_x])
    assert got.dtype == torch.float32
    k = math.floor(ratio * 784)
    expected = torch.stack([_naive(image, k, selection, output) for image in x])
    if output == "coefficients":
        # Exactly k survive per image, and they are the reference's k.
        assert ((got.reshape(N_IMAGES, -1) != 0).sum(1) == k).all()
        assert torch.equal(got != 0, expected != 0)
    torch.testing.assert_close(got.double(), expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("k", [1, 5, 9, 15])
def test_keep_largest_with_ties_keeps_exactly_k_of_the_largest(dtype, k):
    # Magnitudes from {0, 1, 2}: ties at the threshold in most rows, all-zero rows too.
    g = torch.Generator().manual_seed(2)
    coef = (torch.randint(-2, 3, (200, 16), generator=g)).to(dtype)
    coef[:3] = 0
    original = coef.clone()
    _dct_kernels.keep_largest(coef, k)
    for row, before in zip(coef, original, strict=True):
        survivors = (row != 0).nonzero().squeeze(1)
        assert survivors.numel() <= k
        # Survivors keep their values, and with zeros for any kept zero entries their
        # magnitudes are exactly the k largest of the row.
        assert torch.equal(row[survivors], before[survivors])
        got = row.abs().sort(descending=True).values[:k]
        assert torch.equal(got, before.abs().sort(descending=True).values[:k])


@pytest.mark.parametrize("k", [1, 4, 7, 12])
def test_keep_largest_keeps_exactly_k_and_the_first_of_tied_entries(k):
    # Brute force: rank the entries by (magnitude descending, position ascending).
    g = torch.Generator().manual_seed(3)
    coef = torch.randint(-3, 4, (300, 13), generator=g).to(torch.float32)
    expected = torch.zeros_like(coef)
    for i, row in enumerate(coef):
        order = sorted(range(row.numel()), key=lambda j: (-abs(float(row[j])), j))[:k]
        expected[i, order] = row[order]
    got = coef.clone()
    _dct_kernels.keep_largest(got, k)
    assert torch.equal(got, expected)
    assert not torch.signbit(got[got == 0]).any()  # dropped entries are +0.0


@pytest.mark.parametrize("selection", ["magnitude", "lowfreq"])
def test_chunks_shared_out_among_threads_give_the_single_threaded_result(selection):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(700, 1, 12, 10, generator=g)
    x[::7, :, :4] = 0.5  # ties at many thresholds
    order = zigzag_order(12, 10) if selection == "lowfreq" else None
    before = torch.get_num_threads()
    alone, shared = (
        _dct_kernels.transform(
            x, 37, lowfreq_order=order, reconstruct=True, chunk=64, threads=threads
        )
        for threads in (1, 3)
    )
    assert torch.equal(alone, shared)
    assert torch.get_num_threads() == before  # the caller's threads are restored
