"""Randomized greedy compression (greedy_random): draws, scores, order, Θ and its bits."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from benchharness import BenchError
from benchharness.compressing import compressor_generator
from benchharness.compression import CompressionContext, check_compressed
from benchharness_plugins.compressors.greedy import GreedyRandom
from benchharness_plugins.compressors.greedy_scores import (
    LayerScorer,
    draw,
    linear_scores,
    outcomes,
)
from benchharness_plugins.models import LeNet300


def _mlp(sizes=(6, 5, 4), classes=3, seed=0, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return LeNet300(sizes[0], list(sizes[1:]), classes, "relu").to(dtype).eval()


def _data(n=40, features=6, classes=3, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, features, generator=g, dtype=dtype), torch.randint(
        0, classes, (n,), generator=g
    )


def _run(model, x, y, seed=0, **options):
    ctx = CompressionContext(model, x, y, seed=seed)
    comp = GreedyRandom(GreedyRandom.Options(calibration=x.shape[0], **options))
    theta = comp.compress_model(ctx)
    return comp, ctx, theta


# ------------------------------------------------------------------------- draws
@pytest.mark.parametrize("mode", ["prune", "quantize"])
def test_draws_are_unbiased(mode):
    w = torch.tensor([0.37, -0.81, 0.05, -1.2, 0.6], dtype=torch.float64)
    values, probs = outcomes(w, mode, p=0.3, scale=1.2, k=3)
    assert torch.allclose((values * probs).sum(-1), w)  # exactly, analytically
    g = torch.Generator().manual_seed(5)
    n = 3000
    for e in range(w.numel()):
        draws = torch.tensor(
            [float(values[e, draw(probs[e], g)]) for _ in range(n)], dtype=torch.float64
        )
        variance = float((probs[e] * (values[e] - w[e]) ** 2).sum())
        tolerance = 5 * math.sqrt(variance / n) + 1e-12  # 5 standard errors
        assert abs(float(draws.mean()) - float(w[e])) <= tolerance


def test_quantised_values_lie_on_grid():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(200, generator=g, dtype=torch.float64)
    scale, k = float(w.abs().max()), 4
    values, probs = outcomes(w, "quantize", scale=scale, k=k)
    levels = values * k / scale
    assert torch.allclose(levels, levels.round(), atol=1e-9)
    assert float(levels.abs().max()) <= k + 1e-9
    assert bool(((probs >= 0) & (probs <= 1)).all())
    # the two outcomes bracket w: stochastic rounding to the nearest grid neighbours
    assert bool((values[:, 0].abs() <= w.abs() + 1e-12).all())
    assert bool((values[:, 1].abs() >= w.abs() - 1e-12).all())
    assert bool(((values[:, 1] - values[:, 0]).abs() <= scale / k + 1e-12).all())


def test_compressed_layer_values_lie_on_grid():
    model = _mlp((6, 8, 4))
    x, y = _data()
    _, _, theta = _run(model, x, y, mode="quantize", k=2)
    layer = theta.layers["fc1.weight"]
    scale = float(model.fc1.weight.detach().abs().max())
    levels = layer.values[layer.compressed] * 2 / scale
    assert torch.allclose(levels, levels.round(), atol=1e-9)
    assert torch.equal(layer.values[~layer.compressed], model.fc1.weight[~layer.compressed])


def test_kept_fraction_matches_one_minus_alpha_plus_alpha_p():
    model = _mlp((16, 64, 4), dtype=torch.float32)
    x, y = _data(64, 16, dtype=torch.float32)
    _, ctx, theta = _run(model, x, y, alpha=0.9, p=0.3)
    numel = model.fc1.weight.numel()
    compressed = int(0.9 * numel)
    assert int(theta.layers["fc1.weight"].compressed.sum()) == compressed
    expected = 1 - 0.9 + 0.9 * 0.3
    sd = math.sqrt(compressed * 0.3 * 0.7) / numel
    assert abs(ctx.metrics["kept_fraction"] - expected) <= 4 * sd
    assert ctx.metrics["kept_fraction"] == theta.layers["fc1.weight"].nnz / numel


# --------------------------------------------------------------- brute-force order
def _brute_loss(model, x, dense_out, kappa, softmax):
    """(1/N)Σ‖Φ̂^κ(x) − Φ^κ(x)‖² by a full forward pass with a hook on module κ."""
    seen = {}
    handle = dict(model.named_modules())[kappa].register_forward_hook(
        lambda _m, _a, out: seen.__setitem__("out", out)
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    out = seen["out"].softmax(-1) if softmax else seen["out"]
    return float(((out - dense_out) ** 2).sum()) / x.shape[0]


@pytest.mark.parametrize(
    "options, kappa, softmax",
    [
        ({"wide": ["fc1"]}, "act1", False),
        ({"wide": [], "tall_then_wide": ["fc1"]}, "act2", False),
        ({"wide": ["fc3"]}, "fc3", True),
        ({"wide": ["fc2"], "mode": "quantize", "k": 2}, "act2", False),
    ],
)
def test_greedy_order_equals_brute_force_scorer(options, kappa, softmax):
    model = _mlp()
    x, y = _data()
    _, _, theta = _run(model, x, y, **options)
    (wname,) = theta.layers
    layer = theta.layers[wname]
    final = layer.values
    dense_out = _brute_loss_target(model, x, kappa, softmax)
    current = copy.deepcopy(model)
    param = dict(current.named_parameters())[wname]
    w0 = param.detach().clone()
    scale = float(w0.abs().max())
    values, probs = outcomes(w0, options.get("mode", "prune"), p=0.3, scale=scale, k=2)
    done = torch.zeros_like(w0, dtype=torch.bool)
    for flat in theta.order[wname]:
        base = _brute_loss(current, x, dense_out, kappa, softmax)
        scores = torch.full(w0.shape, float("inf"), dtype=torch.float64)
        for i, j in (~done).nonzero().tolist():
            expected = 0.0
            for o in range(2):
                with torch.no_grad():
                    param[i, j] = values[i, j, o]
                expected += float(probs[i, j, o]) * _brute_loss(
                    current, x, dense_out, kappa, softmax
                )
            with torch.no_grad():
                param[i, j] = w0[i, j]
            scores[i, j] = abs(expected - base)
        i, j = divmod(flat, w0.shape[1])
        assert float(scores[i, j]) <= float(scores.min()) + 1e-10
        with torch.no_grad():
            param[i, j] = final[i, j]  # replay the draw the compressor made
        done[i, j] = True
        assert float(final[i, j]) in {float(v) for v in values[i, j]}
    assert int(done.sum()) == int(0.9 * w0.numel())


def _brute_loss_target(model, x, kappa, softmax):
    seen = {}
    handle = dict(model.named_modules())[kappa].register_forward_hook(
        lambda _m, _a, out: seen.__setitem__("out", out)
    )
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen["out"].softmax(-1) if softmax else seen["out"]


def test_linear_closed_form_equals_exact_row_scores():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, 7, generator=g, dtype=torch.float64)
    w = torch.randn(4, 7, generator=g, dtype=torch.float64)
    target = torch.randn(30, 4, generator=g, dtype=torch.float64)
    scorer = LayerScorer(x, w, None, target, 30, lambda z: z, lambda z: z, elementwise=True)
    values, probs = outcomes(w, "prune", p=0.3)
    for i in range(4):
        exact = scorer.row_scores(i, values[i], probs[i])
        closed = linear_scores(x, values[i], probs[i], w[i], 30)
        assert torch.allclose(exact, closed, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------- structured
def test_structured_wide_prunes_whole_input_columns():
    model = _mlp((10, 6, 4))
    x, y = _data(40, 10)
    _, _, theta = _run(model, x, y, structured=True)
    layer, w = theta.layers["fc1.weight"], model.fc1.weight
    assert len(theta.order["fc1.weight"]) == int(0.9 * 10)
    removed = 0
    for j in range(10):
        column = layer.values[:, j]
        if j in theta.order["fc1.weight"]:
            assert torch.equal(column, torch.zeros_like(column)) or torch.allclose(
                column, w[:, j] / 0.3
            )
            removed += int(not column.any())
        else:
            assert torch.equal(column, w[:, j])
    assert layer.bits() == 32 * 6 * (10 - removed) + 10


def test_structured_tall_then_wide_prunes_whole_rows():
    model = _mlp((6, 12, 4))
    x, y = _data()
    _, _, theta = _run(model, x, y, wide=[], tall_then_wide=["fc1"], structured=True)
    layer, w = theta.layers["fc1.weight"], model.fc1.weight
    for i in range(12):
        row = layer.values[i]
        if i in theta.order["fc1.weight"]:
            assert torch.equal(row, torch.zeros_like(row)) or torch.allclose(row, w[i] / 0.3)
        else:
            assert torch.equal(row, w[i])


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(4 * 5 * 5, 3)

    def forward(self, x):
        return self.fc1(self.flatten(self.relu1(self.conv1(x))))


def test_structured_conv_prunes_whole_input_filters():
    torch.manual_seed(0)
    model = _Conv().double().eval()
    x = torch.randn(20, 3, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    comp, _, theta = _run(model, x, y, wide=["conv1"], structured=True, alpha=0.7)
    check_compressed("greedy_random", theta, comp.select(model))
    dense = theta.decompress()["conv1.weight"]
    assert dense.shape == model.conv1.weight.shape
    for c in theta.order["conv1.weight"]:  # int(0.7 · 3) = 2 input channels
        block = dense[:, c]
        assert not block.any() or torch.allclose(block, model.conv1.weight[:, c] / 0.3)
    assert len(theta.order["conv1.weight"]) == 2


# --------------------------------------------------------------- Θ and contract
def test_contract_bits_and_unchanged_model():
    model = _mlp((6, 8, 4))
    before = copy.deepcopy(model.state_dict())
    x, y = _data()
    comp, ctx, theta = _run(model, x, y, wide=["fc1", "fc3"])
    check_compressed("greedy_random", theta, comp.select(model))
    assert theta.realised is True
    for key, value in before.items():
        assert torch.equal(model.state_dict()[key], value)
    dense = theta.decompress()
    nnz1, nnz3 = int((dense["fc1.weight"] != 0).sum()), int((dense["fc3.weight"] != 0).sum())
    # fc1: 48 weights → 6-bit positions; fc3: 12 weights → 4-bit positions
    assert theta.bits() == nnz1 * (32 + 6) + nnz3 * (32 + 4)
    assert theta.effective_macs("fc1.weight", 48) == nnz1
    for key in ("distortion", "dense_loss", "compressed_loss", "kept_fraction"):
        assert math.isfinite(ctx.metrics[key]) and ctx.metrics[key] >= 0


def test_quantised_bits_hand_count():
    model = _mlp((6, 8, 4))
    x, y = _data()
    _, _, theta = _run(model, x, y, mode="quantize", k=3)
    # 48 weights, int(0.9·48) = 43 coded over 2·3 + 1 levels + escape = 8 → 3 bits each,
    # 5 escaped 32-bit values, one 32-bit M
    assert theta.bits() == 48 * 3 + 5 * 32 + 32
    assert theta.effective_macs("fc1.weight", 48) == 48


def test_same_generator_same_result_other_draw_differs():
    model = _mlp((6, 8, 4))
    x, y = _data()

    def run(draw_label):
        table = {"name": "greedy_random", "draw": draw_label}
        ctx = CompressionContext(model, x, y, seed=0, generator=compressor_generator(0, 0, table))
        comp = GreedyRandom(GreedyRandom.Options(calibration=40, draw=draw_label))
        return comp.compress_model(ctx).decompress()["fc1.weight"]

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_projection_and_heldout_distortion_run():
    model = _mlp((6, 8, 4))
    x, y = _data(60)
    ctx = CompressionContext(model, x, y, seed=0)
    comp = GreedyRandom(
        GreedyRandom.Options(calibration=40, heldout=20, project_output=True, wide=["fc1"])
    )
    comp.compress_model(ctx)
    assert ctx.metrics["distortion"] > 0


@pytest.mark.parametrize(
    "options, message",
    [
        ({"alpha": 1.5}, "less than 1"),
        ({"structured": True, "mode": "quantize"}, "needs mode = 'prune'"),
        ({"wide": ["fc1"], "tall_then_wide": ["fc1"]}, "in both"),
        ({"wide": []}, "at least one layer"),
        ({"p": 0}, "greater than 0"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValidationError, match=message):
        GreedyRandom.Options(**options)


def test_bad_layers_are_bench_errors():
    model = _mlp()
    x, y = _data()
    with pytest.raises(BenchError, match="not a Linear"):
        _run(model, x, y, wide=["act1"])
    with pytest.raises(BenchError, match="stays dense"):
        _run(model, x, y, wide=["fc2"], tall_then_wide=["fc1"])
