"""The shared training loop and lr schedules, on a tiny separable problem."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from fakes import FakeContext
from torch import nn

from benchharness import Data, Diverged
from benchharness.training import lr_at, train_epochs

KEYS = {"train_loss", "test_loss", "test_accuracy", "lr"}


def blobs(n: int = 400, classes: int = 3, dim: int = 10, seed: int = 0) -> Data:
    """Gaussian blobs around well-separated class means: linearly separable in practice."""
    g = torch.Generator().manual_seed(seed)
    means = 4.0 * torch.randn(classes, dim, generator=g)
    y = torch.randint(classes, (n,), generator=g)
    x = means[y] + torch.randn(n, dim, generator=g)
    split = n // 4
    return Data(x[split:], y[split:], x[:split], y[:split], num_classes=classes)


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    ctx = FakeContext(blobs())
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    return ctx, model, torch.optim.SGD(model.parameters(), lr=0.0)


# ---------------------------------------------------------------------------- schedules
def test_lr_at_constant():
    assert [lr_at(e, lr=0.1, epochs=5) for e in range(5)] == [0.1] * 5


def test_lr_at_cosine_closed_form():
    lrs = [lr_at(e, lr=0.1, epochs=4, schedule="cosine", lr_min=0.01) for e in range(4)]
    expected = [
        0.1,
        0.01 + 0.09 * (1 + math.cos(math.pi / 4)) / 2,
        0.055,
        0.01 + 0.09 * (1 - math.cos(math.pi / 4)) / 2,
    ]
    assert lrs == pytest.approx(expected)
    assert lr_at(4, lr=0.1, epochs=4, schedule="cosine", lr_min=0.01) == pytest.approx(0.01)


def test_lr_at_cosine_matches_torch_scheduler():
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30, eta_min=0.001)
    for epoch in range(30):
        got = lr_at(epoch, lr=0.01, epochs=30, schedule="cosine", lr_min=0.001)
        assert got == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        sched.step()


def test_lr_at_step():
    lrs = [lr_at(e, lr=1.0, epochs=6, schedule="step", step_size=2, gamma=0.5) for e in range(6)]
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    floored = lr_at(5, lr=1.0, epochs=6, schedule="step", step_size=2, gamma=0.5, lr_min=0.3)
    assert floored == 0.3


def test_lr_at_unknown_schedule():
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr_at(0, lr=0.1, epochs=2, schedule="linear")


# ---------------------------------------------------------------------------- the loop
def test_loss_decreases_accuracy_rises_and_logs_each_epoch():
    ctx, model, opt = _setup()
    before = ctx.evaluate(model).accuracy
    losses = train_epochs(
        model, ctx, opt, epochs=5, batch_size=32, lr_for_epoch=lambda e: 0.1 / (e + 1)
    )
    assert len(losses) == 5
    assert losses[-1] < 0.5 * losses[0]
    assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    after = ctx.logs[-1][3]["test_accuracy"]
    assert after > 0.95 > before
    assert [(step, total, phase) for step, total, phase, _ in ctx.logs] == [
        (e, 5, "train") for e in range(1, 6)
    ]
    for epoch, (_, _, _, values) in enumerate(ctx.logs):
        assert set(values) == KEYS
        assert values["lr"] == pytest.approx(0.1 / (epoch + 1))
        assert all(isinstance(v, float) for v in values.values())
    assert [v["train_loss"] for *_, v in ctx.logs] == losses
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 / 5)
    assert model.training


def test_train_loss_is_the_sample_weighted_mean():
    # lr 0 leaves the model unchanged, so the epoch's mean loss must equal the full-set loss
    # even though the last batch (300 = 7·42 + 6) is smaller.
    ctx, model, opt = _setup()
    with torch.no_grad():
        full = F.cross_entropy(model(ctx.data.train_x), ctx.data.train_y).item()
    (loss,) = train_epochs(model, ctx, opt, epochs=1, batch_size=7, lr_for_epoch=lambda e: 0.0)
    assert loss == pytest.approx(full, rel=1e-5)


def test_step_offset_total_and_phase():
    ctx, model, opt = _setup()
    train_epochs(
        model,
        ctx,
        opt,
        epochs=3,
        batch_size=64,
        lr_for_epoch=lambda e: 0.05,
        phase="lc",
        step_offset=5,
        total=20,
    )
    assert [(s, t, p) for s, t, p, _ in ctx.logs] == [(6, 20, "lc"), (7, 20, "lc"), (8, 20, "lc")]


def test_penalty_is_minimised_and_logged():
    ctx, model, opt = _setup()
    targets = [torch.zeros_like(p) for p in model.parameters()]

    def penalty():
        return 50.0 * sum(
            (p - t).pow(2).sum() for p, t in zip(model.parameters(), targets, strict=True)
        )

    start = sum(p.detach().pow(2).sum() for p in model.parameters()).item()
    train_epochs(
        model, ctx, opt, epochs=3, batch_size=32, lr_for_epoch=lambda e: 0.005, penalty=penalty
    )
    end = sum(p.detach().pow(2).sum() for p in model.parameters()).item()
    assert end < 0.01 * start
    assert set(ctx.logs[0][3]) == KEYS | {"penalty"}
    assert ctx.logs[-1][3]["penalty"] < ctx.logs[0][3]["penalty"]


def test_nan_data_raises_diverged():
    ctx, model, opt = _setup()
    ctx.data.train_x[17, 3] = float("nan")
    with pytest.raises(Diverged) as info:
        train_epochs(model, ctx, opt, epochs=3, batch_size=32, lr_for_epoch=lambda e: 0.1)
    message = str(info.value)
    assert "\n" not in message
    assert "not finite" in message and "epoch 1" in message
    assert ctx.logs == []


def test_huge_lr_raises_diverged():
    torch.manual_seed(0)
    ctx = FakeContext(blobs())
    model = nn.Sequential(
        nn.Linear(10, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.ReLU(),
        nn.Linear(32, 3),
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    with pytest.raises(Diverged, match="at lr 1e\\+12"):
        train_epochs(model, ctx, opt, epochs=5, batch_size=16, lr_for_epoch=lambda e: 1e12)
