"""The fused CPU kernels (benchharness.grouped.conv_pool) against torch's layers: values and
gradients against a float64 reference, torch's tie rule on exact ties, bf16, the shapes
that exercise the kernels' edges (odd sizes, padding, partial channel blocks), and the
fallbacks when a kernel does not apply."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchharness.grouped import conv_pool, cpu_kernels, fuse
from benchharness.grouped.chain import chain_of
from benchharness.grouped.conv_pool import Fusion, conv_relu_pool, plan_of, pool_relu


@pytest.fixture(scope="module", autouse=True)
def kernels():
    """On this project's machines (Linux, gcc, ninja from pyproject) the kernels must
    build: a silent fallback would leave every test here checking torch against itself."""
    module = cpu_kernels.cpu_kernels()
    assert module is not None, "the fused CPU kernels did not build (see stderr)"
    return module


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def _reference(x, weight, bias, members, padding):
    """The layers as the member models run them, in float64: conv → ReLU → 2×2 max-pool."""
    conv = F.conv2d(x.double(), weight.double(), None if bias is None else bias.double(),
                    1, padding, 1, members)  # fmt: skip
    return F.max_pool2d(F.relu(conv), 2)


# (members, input channels, output channels, height, width, kernel, padding)
SHAPES = [
    (5, 1, 8, 28, 28, 3, 1),  # CompressedNet α = 0.5 on MNIST
    (3, 1, 4, 28, 28, 3, 1),  # a partial channel block (kernel blocks of 8)
    (2, 3, 20, 12, 10, 5, 2),  # CIFAR-like: 3 input channels, 20 = 8 + 8 + 4
    (2, 2, 8, 9, 7, 3, 1),  # odd sizes: the last conv row/column is outside every window
    (1, 1, 16, 8, 8, 3, 0),  # no padding
]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_conv_relu_pool_matches_the_layers_in_float64(shape, bias):
    m, cin, c, h, w, k, pad = shape
    torch.manual_seed(0)
    x = torch.randn(4, m * cin, h, w)
    x[:, :, : h // 2] = 0  # a blank region: exact ties in every window there
    weight = torch.randn(m * c, cin, k, k, requires_grad=True)
    b = torch.randn(m * c, requires_grad=True) if bias else None
    conv = nn.Conv2d(cin, c, k, padding=pad)

    out = conv_relu_pool(_channels_last(x), weight, b, conv, m)
    expected = _reference(x, weight, b, m, pad)
    assert out.shape == expected.shape
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)

    grad = torch.randn_like(expected)
    params = [weight] if b is None else [weight, b]
    actual = torch.autograd.grad(out, params, grad.float())
    wanted = torch.autograd.grad(expected, params, grad)
    for a, e in zip(actual, wanted, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-5, atol=1e-4)


def test_conv_relu_pool_follows_torchs_tie_rule():
    """All-equal windows (a zero image, a positive bias): the first position wins, so only
    the window's top-left input feeds the weight gradient — as torch's max-pool decides."""
    m, c = 2, 8
    x = torch.zeros(1, m, 4, 4)
    x[0, :, 0, 0] = 1.0  # seen by the top-left output's centre tap only
    weight = torch.zeros(m * c, 1, 3, 3, requires_grad=True)
    bias = torch.ones(m * c, requires_grad=True)
    conv = nn.Conv2d(1, c, 3, padding=1)
    out = conv_relu_pool(_channels_last(x), weight, bias, conv, m)
    grad = torch.ones_like(out)
    actual = torch.autograd.grad(out, (weight, bias), grad)
    ref_w = weight.detach().clone().requires_grad_()
    ref_b = bias.detach().clone().requires_grad_()
    ref = F.max_pool2d(F.relu(F.conv2d(x, ref_w, ref_b, 1, 1, 1, m)), 2)
    wanted = torch.autograd.grad(ref, (ref_w, ref_b), grad)
    assert torch.equal(out, ref)
    for a, e in zip(actual, wanted, strict=True):
        assert torch.equal(a, e)
    assert actual[0][:, 0, 1, 1].eq(1).all()  # the centre tap of every channel saw the 1


def test_conv_relu_pool_under_bf16_autocast_rounds_as_the_autocast_layers():
    m, c = 3, 8
    torch.manual_seed(1)
    x = torch.randn(8, m, 28, 28)
    weight = torch.randn(m * c, 1, 3, 3, requires_grad=True)
    bias = torch.randn(m * c, requires_grad=True)
    conv = nn.Conv2d(1, c, 3, padding=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = conv_relu_pool(_channels_last(x), weight, bias, conv, m)
        ref = F.max_pool2d(F.relu(F.conv2d(x, weight, bias, 1, 1, 1, m)), 2)
    assert out.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=1.6e-2, atol=1e-2)
    grad = torch.randn(ref.shape)
    actual = torch.autograd.grad(out.float(), (weight, bias), grad)
    wanted = torch.autograd.grad(ref.float(), (weight, bias), grad)
    for a, e in zip(actual, wanted, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, e, rtol=2e-2, atol=2e-2 * e.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("size", [(14, 14), (7, 9), (2, 3)], ids=str)
def test_pool_relu_equals_torchs_pool_and_relu_exactly(size, dtype):
    """Values and gradients bit for bit: the kernel only selects, never computes."""
    torch.manual_seed(2)
    x = torch.randn(3, 20, *size).to(dtype)
    x[:, :, :1] = 0  # ties (and zeros for the ReLU)
    x[0, 0, 0, 0] = float("nan")  # torch's max-pool and ReLU pass NaN on
    x = _channels_last(x).requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    out = pool_relu(x)
    ref = F.relu(F.max_pool2d(ref_x, 2))
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True)
    grad = torch.randn(ref.shape).to(dtype)
    (actual,) = torch.autograd.grad(out, x, grad)
    (wanted,) = torch.autograd.grad(ref, ref_x, grad)
    assert torch.equal(actual, wanted)


def test_the_kernels_decline_what_they_do_not_cover():
    conv = nn.Conv2d(1, 8, 3, padding=1)
    weight = torch.randn(16, 1, 3, 3)
    x = _channels_last(torch.randn(2, 2, 8, 8))
    assert conv_relu_pool(x.double(), weight.double(), None, conv, 2) is None
    assert conv_relu_pool(x.clone().requires_grad_(), weight, None, conv, 2) is None
    assert pool_relu(torch.randn(2, 4, 8, 8)) is None  # not channels-last
    assert pool_relu(_channels_last(torch.randn(2, 4, 8, 8)).half()) is None
    assert pool_relu(_channels_last(torch.randn(2, 4, 1, 8))) is None


def test_plan_fuses_the_first_conv_block_and_later_pools():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(), nn.MaxPool2d(3),
        nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip
    assert plan_of(chain_of(net)) == {
        0: Fusion("conv_relu_pool", 3),
        4: Fusion("pool_relu", 2),
    }  # a 3×3 pool and a strided first conv are not covered
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2))
    assert plan_of(chain_of(strided)) == {1: Fusion("pool_relu", 2)}


def _compressednets(n: int):
    from benchharness_plugins.models import CompressedNet

    plugin = CompressedNet(CompressedNet.Options(width=0.5, hidden=16))
    models = []
    for seed in range(n):
        torch.manual_seed(seed)
        models.append(plugin.build((1, 28, 28), 10))
    return models


def test_fused_net_with_kernels_off_computes_the_same(monkeypatch):
    """BENCH_FUSED_KERNELS=0: the same forward and gradients through torch's layers."""
    models = _compressednets(3)
    x = torch.randn(3, 16, 1, 28, 28)
    results = []
    for setting in ("1", "0"):
        monkeypatch.setenv("BENCH_FUSED_KERNELS", setting)
        fused = fuse(models).use_channels_last()
        out = fused(x)
        grads = torch.autograd.grad(out.square().sum(), list(fused.parameters()))
        results.append((out, grads))
    (out_on, grads_on), (out_off, grads_off) = results
    torch.testing.assert_close(out_on, out_off, rtol=1e-5, atol=1e-5)
    for a, b in zip(grads_on, grads_off, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_fused_net_uses_the_kernels_in_the_channels_last_layout(monkeypatch):
    calls = []
    for name in ("conv_relu_pool", "pool_relu"):
        original = getattr(conv_pool, name)
        monkeypatch.setattr(
            "benchharness.grouped.fused_net." + name,
            lambda *a, _f=original, _n=name: calls.append(_n) or _f(*a),
        )
    fused = fuse(_compressednets(2))
    fused(torch.randn(2, 4, 1, 28, 28))
    assert calls == []  # the plain layout runs torch's layers
    fused.use_channels_last()(torch.randn(2, 4, 1, 28, 28))
    assert calls == ["conv_relu_pool", "pool_relu"]
