"""sparse_lowrank: proximal maps, the extended ADMM, the asymmetric layer-by-layer driver,
bits, the target-ratio search and structure-preserving fine-tuning."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from sklearn.datasets import load_digits
from torch import nn

from benchharness.compression import CompressionContext, check_compressed
from benchharness_plugins.compressors.admm import (
    AdmmSettings,
    LayerProblem,
    admm,
    column_shrink,
    input_curvature,
    layer_op,
    relu_followers,
    singular_value_threshold,
)
from benchharness_plugins.compressors.sparse_lowrank import SparseLowRank, SparseLowRankLayer
from benchharness_plugins.models import CompressedNet

FAST = {"calibration": 300, "iterations": 20, "sgd_steps": 5, "refit_steps": 50}


def compressor(**options) -> SparseLowRank:
    return SparseLowRank(SparseLowRank.Options(**{**FAST, **options}))


@pytest.fixture(scope="module")
def digits():
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16
    return x, torch.tensor(d.target)


@pytest.fixture(scope="module")
def trained(digits):
    """conv1(1→8) → conv2(8→16) → fc1(64→128) → fc2(128→10) trained on 8×8 digits."""
    x, y = digits
    torch.manual_seed(0)
    model = CompressedNet(CompressedNet.Options(width=0.5)).build((1, 8, 8), 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def loaded(model, theta):
    out = copy.deepcopy(model)
    state = out.state_dict()
    state.update(theta.decompress())
    out.load_state_dict(state)
    return out


@pytest.fixture(scope="module")
def at_ratio_4(trained, digits):
    ctx = CompressionContext(trained, *digits, seed=0)
    before = copy.deepcopy(trained.state_dict())
    theta = compressor(target_ratio=4).compress_model(ctx)
    return ctx, theta, before


# ------------------------------------------------------------------- proximal maps
def test_column_shrinkage_is_the_closed_form_and_the_prox():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(6, 9)) * np.linspace(0.1, 2.0, 9)  # some columns below threshold
    threshold = 1.2
    out = column_shrink(torch.tensor(c), threshold).numpy()
    reference = np.zeros_like(c)
    for i in range(c.shape[1]):
        norm = np.linalg.norm(c[:, i])
        if norm > threshold:
            reference[:, i] = (norm - threshold) / norm * c[:, i]
    np.testing.assert_allclose(out, reference, atol=1e-12)
    zero = np.linalg.norm(c, axis=0) <= threshold
    assert zero.any() and (~zero).any()
    assert (out[:, zero] == 0).all()  # exact zeros, not small values

    def prox_objective(x):
        return 0.5 * ((x - c) ** 2).sum() + threshold * np.linalg.norm(x, axis=0).sum()

    best = prox_objective(out)
    for _ in range(300):
        assert best <= prox_objective(out + 0.05 * rng.normal(size=c.shape)) + 1e-12


def test_singular_value_thresholding_is_the_closed_form_and_the_prox():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(7, 5))
    threshold = 1.5
    us, v = singular_value_threshold(torch.tensor(d), threshold)
    u, s, vt = np.linalg.svd(d, full_matrices=False)
    keep = s > threshold
    reference = (u[:, keep] * (s[keep] - threshold)) @ vt[keep]
    np.testing.assert_allclose((us @ v.T).numpy(), reference, atol=1e-10)
    assert us.shape[1] == v.shape[1] == keep.sum() and 0 < keep.sum() < 5
    np.testing.assert_allclose(v.T.numpy() @ v.numpy(), np.eye(keep.sum()), atol=1e-10)

    def prox_objective(x):
        return 0.5 * ((x - d) ** 2).sum() + threshold * np.linalg.svd(x, compute_uv=False).sum()

    best = prox_objective(reference)
    for _ in range(300):
        assert best <= prox_objective(reference + 0.05 * rng.normal(size=d.shape)) + 1e-12


# -------------------------------------------------------------------------- ADMM
def _linear_problem(relu: bool, seed: int = 0) -> LayerProblem:
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(12, 5)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(5, 12, generator=g))
        layer.bias.copy_(torch.randn(5, generator=g) * 0.1)
    x = torch.randn(64, 12, generator=g) * torch.linspace(0.2, 2.0, 12)
    with torch.no_grad():
        y = layer(x)
    problem = LayerProblem(
        layer.weight.detach(), layer.bias.detach(), layer_op(layer), x, y, relu, relu
    )
    problem.scale = input_curvature(layer_op(layer), (1, 12), x, g)
    return problem


def _reference_objective(problem: LayerProblem, lambda1: float, lambda2: float) -> float:
    """Accelerated proximal gradient (FISTA) on (A, B) in float64 numpy: an independent
    solver of the same convex problem (linear response)."""
    x = problem.inputs.double().numpy()
    y = problem.outputs.double().numpy()
    b0 = problem.bias.double().numpy()
    c, n = problem.scale, x.shape[0]

    def fit(w):
        return ((x @ w.T + b0 - y) ** 2).sum() / (n * c)

    def grad(w):
        return 2 * (x @ w.T + b0 - y).T @ x / (n * c)

    def total(a, b):
        nuc = np.linalg.svd(b, compute_uv=False).sum()
        return fit(a + b) + lambda1 * np.linalg.norm(a, axis=0).sum() + lambda2 * nuc

    step = 1 / (2 * 2 * np.linalg.eigvalsh(x.T @ x / (n * c)).max())
    w = problem.matrix.double().numpy()
    a, b = np.zeros_like(w), w.copy()
    za, zb, momentum = a, b, 1.0
    for _ in range(4000):
        g = grad(za + zb)
        a_new = column_shrink(torch.tensor(za - step * g), step * lambda1).numpy()
        us, v = singular_value_threshold(torch.tensor(zb - step * g), step * lambda2)
        b_new = (us @ v.T).numpy()
        next_momentum = (1 + np.sqrt(1 + 4 * momentum**2)) / 2
        za = a_new + (momentum - 1) / next_momentum * (a_new - a)
        zb = b_new + (momentum - 1) / next_momentum * (b_new - b)
        a, b, momentum = a_new, b_new, next_momentum
    return total(a, b)


def test_input_scale_is_the_largest_eigenvalue_of_the_input_second_moment():
    problem = _linear_problem(relu=False)
    x = problem.inputs.double().numpy()
    assert problem.scale == pytest.approx(np.linalg.eigvalsh(x.T @ x / 64).max(), rel=1e-3)

    g = torch.Generator().manual_seed(3)
    conv = nn.Conv2d(3, 4, 3, padding=1, stride=2)
    maps = torch.rand(20, 3, 7, 7, generator=g)
    patches = F.unfold(maps, 3, padding=1, stride=2).double()  # (N, 27, positions)
    gram = torch.einsum("nip,njp->ij", patches, patches).numpy() / 20
    value = input_curvature(layer_op(conv), (1, 3, 3, 3), maps, g)
    assert value == pytest.approx(np.linalg.eigvalsh(gram).max(), rel=1e-3)


def test_admm_converges_to_the_convex_optimum_with_a_plus_b_equal_m():
    problem = _linear_problem(relu=False)
    lambda1, lambda2 = 0.5, 0.6
    settings = AdmmSettings(iterations=400, sgd_steps=20, batch_size=64, tol=1e-6)
    result = admm(problem, lambda1, lambda2, True, settings, torch.Generator().manual_seed(0))
    norm_w = float(torch.linalg.vector_norm(problem.matrix))
    assert float(torch.linalg.vector_norm(result.a + result.b - result.m)) / norm_w < 1e-3
    assert result.residual < 1e-3
    reference = _reference_objective(problem, lambda1, lambda2)
    assert result.objective == pytest.approx(reference, rel=2e-3)
    # both parts are used at these weights: some columns zeroed, rank reduced
    kept = int((result.a.abs().sum(0) > 0).sum())
    assert 0 < kept < 12 and 0 < result.us.shape[1] < 5


def test_admm_with_relu_response_lowers_its_own_objective():
    problem = _linear_problem(relu=True, seed=1)
    settings = AdmmSettings(iterations=200, sgd_steps=10, batch_size=64, tol=1e-6)
    result = admm(problem, 0.2, 0.5, True, settings, torch.Generator().manual_seed(0))
    assert result.residual < 1e-2
    w = problem.matrix
    start = float(problem.loss(w)) + 0.5 * float(torch.linalg.matrix_norm(w, ord="nuc"))
    assert result.objective < start


# ------------------------------------------------------------------------- bits
def test_bits_and_macs_by_hand():
    a = torch.tensor([[1.0, 2.0], [0.0, 3.0], [4.0, 5.0], [6.0, 7.0]])  # 7 nonzeros
    layer = SparseLowRankLayer(
        torch.Size([4, 6]),
        torch.float32,
        torch.tensor([1, 4]),
        a,
        torch.ones(4, 1),
        torch.ones(6, 1),
    )
    # CSR: 7 × (32 + ⌈log2 6⌉ = 3) + 5 row pointers × ⌈log2 8⌉ = 3 → 260
    assert layer.csr_bits() == 7 * 35 + 5 * 3 == 260
    # kept columns: 32 × 4 × 2 + 6-bit mask → 262
    assert layer.column_bits() == 262
    # + rank 1 factors 32 × (4 + 6)
    assert layer.bits() == 260 + 320
    assert layer.macs(24 * 10) == 10 * (7 + 10)
    dense = layer.dense()
    assert (dense[:, [0, 2, 3, 5]] == 1).all() and dense[1, 1] == 1 and dense[3, 4] == 8
    wide = SparseLowRankLayer(
        torch.Size([4, 6]),
        torch.float32,
        torch.tensor([1, 4]),
        a,
        torch.ones(4, 3),
        torch.ones(6, 3),
    )
    assert wide.bits() == 32 * 24  # 260 + 960 exceeds dense: stored dense
    assert wide.macs(240) == 240


# ----------------------------------------------------------------- the compressor
def test_relu_followers_sees_the_relu_modules(trained, digits):
    found = relu_followers(trained, ["conv1", "conv2", "fc1", "fc2"], digits[0][:4])
    assert found == {"conv1": True, "conv2": True, "fc1": True, "fc2": False}


def test_result_is_valid_structured_and_leaves_the_model_unchanged(trained, digits, at_ratio_4):
    ctx, theta, before = at_ratio_4
    check_compressed("sparse_lowrank", theta, dict(trained.named_parameters()))
    after = trained.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert set(theta.layers) == {"conv2.weight", "fc1.weight", "fc2.weight"}  # conv1 skipped
    for name, layer in theta.layers.items():
        dense = layer.dense().reshape(layer.rows, -1)
        sparse = layer.sparse_matrix()
        zero = torch.ones(layer.cols, dtype=torch.bool)
        zero[layer.columns] = False
        assert zero.any(), name
        assert (sparse[:, zero] == 0).all()
        assert int(ctx.metrics[f"kept_columns.{name[:-7]}"]) == layer.kept_columns
        if name.startswith("fc"):
            assert layer.rank == 0  # fc_sparse_only
            assert (dense[:, zero] == 0).all()
    assert theta.layers["conv2.weight"].rank > 0
    assert theta.realised is True
    total = 32 * sum(layer.shape.numel() for layer in theta.layers.values())
    assert theta.bits() == sum(layer.bits() for layer in theta.layers.values())
    assert ctx.metrics["bits"] == theta.bits()
    assert ctx.metrics["ratio_selected"] == pytest.approx(total / theta.bits())
    assert 0 <= ctx.metrics["reconstruction_error"] < 1


def test_target_ratio_is_reached_and_accuracy_survives(trained, digits, at_ratio_4):
    ctx, theta, _ = at_ratio_4
    assert ctx.metrics["ratio_selected"] == pytest.approx(4, rel=0.05)
    for name in ("conv2", "fc1", "fc2"):
        assert ctx.metrics[f"ratio.{name}"] == pytest.approx(4, rel=0.1)
    x, y = digits
    assert accuracy(loaded(trained, theta), x, y) > 0.6  # dense ≈ 0.98, chance 0.1

    linear_ctx = CompressionContext(trained, x, y, seed=0)
    compressor(target_ratio=4, response="linear").compress_model(linear_ctx)
    assert linear_ctx.metrics["ratio_selected"] == pytest.approx(4, rel=0.05)


def test_inputs_come_from_the_already_approximated_layers(trained, digits):
    x, y = digits
    ctx = CompressionContext(trained, x, y, seed=0)
    seen = []
    capture = ctx.capture

    def spy(model, names, batches):
        out = capture(model, names, batches)
        seen.append((model, list(names), out))
        return out

    ctx.capture = spy
    theta = compressor(lambda1=0.05, layers=["conv2", "fc1"]).compress_model(ctx)
    fc1_calls = [(m, out) for m, names, out in seen if names == ["fc1"]]
    assert len(fc1_calls) == 1 and fc1_calls[0][0] is not trained
    inputs = fc1_calls[0][1]["fc1"].inputs
    calibration = torch.cat([b for b, _ in ctx.calibration_batches(300, 256)])
    with torch.no_grad():
        conv2 = trained.conv2
        w = theta.decompress()["conv2.weight"]
        h = trained.pool1(trained.relu1(trained.conv1(calibration)))
        approximated = trained.pool2(F.relu(conv2._conv_forward(h, w, conv2.bias))).flatten(1)
        original = trained.pool2(F.relu(conv2(h))).flatten(1)
    torch.testing.assert_close(inputs, approximated)
    assert not torch.allclose(inputs, original, atol=1e-3)


def test_fine_tuning_keeps_zero_columns_and_rank(trained, digits):
    x, y = digits
    tables = []

    def fine_tuner(model, table):
        tables.append(dict(table))
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(trainable, lr=table["lr"])
        for i in range(0, 600, 60):
            loss = F.cross_entropy(model(x[i : i + 60]), y[i : i + 60])
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model

    options = {"lambda1": 0.05, "skip_first_conv": True}
    plain_ctx = CompressionContext(trained, x, y, seed=0)
    plain = compressor(**options).compress_model(plain_ctx)
    ctx = CompressionContext(trained, x, y, seed=0, fine_tuner=fine_tuner)
    table = {"name": "sgd", "lr": 0.05, "epochs": 1}
    tuned = compressor(**options, finetune=table).compress_model(ctx)
    assert tables == [table]
    check_compressed("sparse_lowrank", tuned, dict(trained.named_parameters()))
    for name, layer in tuned.layers.items():
        before = plain.layers[name]
        assert torch.equal(layer.columns, before.columns)
        assert layer.rank == before.rank
        zero = torch.ones(layer.cols, dtype=torch.bool)
        zero[layer.columns] = False
        assert (layer.sparse_matrix()[:, zero] == 0).all()
        low = layer.us @ layer.v.T
        assert int(torch.linalg.matrix_rank(low)) <= before.rank
        assert not torch.allclose(layer.dense(), before.dense())
    assert tuned.bits() == plain.bits()  # same columns and rank
    assert "calibration_loss_finetuned" in ctx.metrics


def test_fc_sparse_only_off_and_first_conv_included(trained, digits):
    ctx = CompressionContext(trained, *digits, seed=0)
    theta = compressor(lambda1=0.02, skip_first_conv=False, fc_sparse_only=False).compress_model(
        ctx
    )
    assert "conv1.weight" in theta.layers
    assert any(layer.rank > 0 for n, layer in theta.layers.items() if n.startswith("fc"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of lambda1 and target_ratio"),
        ({"lambda1": 0.1, "target_ratio": 4}, "exactly one of lambda1 and target_ratio"),
        ({"target_ratio": 4, "lambda2": 0.2}, "lambda2 goes with lambda1"),
        ({"lambda1": 0.1, "finetune": {"lr": 0.1}}, "needs an optimizer name"),
        ({"lambda1": 0.1, "response": "tanh"}, "'relu' or 'linear'"),
        ({"lambda1": 0.1, "bogus": 1}, "Extra inputs are not permitted"),
        ({"target_ratio": 0.5}, "greater than or equal to 1"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(ValidationError) as info:
        SparseLowRank.Options(**options)
    assert message in str(info.value)
    assert len(info.value.errors()) == 1
