"""The sgd and adam plugins: learning on digits, options, and SGD against a hand-written step."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fakes import FakeContext
from pydantic import ValidationError
from torch import nn

from benchharness import Data, Diverged
from benchharness.plugins import get_registry
from benchharness_plugins.datasets import Digits
from benchharness_plugins.models import CompressedNet, LeNet300Model
from benchharness_plugins.optimizers import SGD, Adam


@pytest.fixture(scope="module")
def digits() -> Data:
    return Digits().load(Path("unused"))


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return LeNet300Model(LeNet300Model.Options(hidden=[32])).build((1, 8, 8), 10)


@pytest.mark.parametrize(
    ("cls", "options"),
    [
        (SGD, {"lr": 0.05, "epochs": 8}),
        (SGD, {"lr": 0.05, "epochs": 8, "nesterov": True, "schedule": "step", "step_size": 4}),
        (Adam, {"lr": 3e-3, "epochs": 8, "weight_decay": 1e-4}),
        (Adam, {"lr": 3e-3, "epochs": 8, "weight_decay": 1e-2, "decoupled": True}),
    ],
)
def test_learns_digits(cls, options, digits):
    ctx = FakeContext(digits)
    model = _mlp()
    before = ctx.evaluate(model).accuracy
    returned = cls(cls.Options(**options)).train(model, ctx)
    assert returned is model
    assert len(ctx.logs) == options["epochs"]
    assert [step for step, *_ in ctx.logs] == list(range(1, options["epochs"] + 1))
    assert {total for _, total, *_ in ctx.logs} == {options["epochs"]}
    values = [v for *_, v in ctx.logs]
    assert all(set(v) == {"train_loss", "test_loss", "test_accuracy", "lr"} for v in values)
    assert values[-1]["train_loss"] < 0.5 * values[0]["train_loss"]
    assert values[-1]["test_accuracy"] > 0.9 > before


def test_cosine_schedule_is_applied(digits):
    ctx = FakeContext(digits)
    SGD(SGD.Options(lr=0.04, lr_min=0.01, epochs=2, schedule="cosine")).train(_mlp(), ctx)
    assert [v["lr"] for *_, v in ctx.logs] == pytest.approx([0.04, 0.025])


def _hand_sgd(model, ctx, *, lr, momentum, weight_decay, nesterov, batch_size):
    """One epoch of SGD written out: g ← ∇ + wd·w; b ← μb + g; w ← w − lr·(g + μb | b)."""
    buffers = {}
    for x, y in ctx.batches(batch_size):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for name, p in model.named_parameters():
                g = p.grad + weight_decay * p
                b = buffers[name] = (
                    g.clone() if name not in buffers else momentum * buffers[name] + g
                )
                p -= lr * (g + momentum * b if nesterov else b)


@pytest.mark.parametrize("nesterov", [False, True])
def test_one_sgd_epoch_equals_hand_written_steps(nesterov, digits):
    options = {"lr": 0.03, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": nesterov}
    model = _mlp(seed=1)
    reference = copy.deepcopy(model)
    SGD(SGD.Options(epochs=1, batch_size=50, schedule="constant", **options)).train(
        model, FakeContext(digits, seed=7)
    )
    _hand_sgd(reference, FakeContext(digits, seed=7), batch_size=50, **options)
    for (name, got), want in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5, msg=name)
    assert not torch.equal(model.fc1.weight, _mlp(seed=1).fc1.weight)


def test_huge_lr_raises_diverged(digits):
    torch.manual_seed(0)
    model = CompressedNet().build((1, 8, 8), 10)
    options = SGD.Options(lr=1e6, epochs=2, schedule="constant")
    with pytest.raises(Diverged, match="not finite") as info:
        SGD(options).train(model, FakeContext(digits))
    assert "\n" not in str(info.value)


def test_sgd_option_errors():
    with pytest.raises(ValidationError, match="nesterov = true needs momentum > 0"):
        SGD.Options(nesterov=True, momentum=0.0)
    with pytest.raises(ValidationError, match=r"must be in \(0, 1\], got 1.5"):
        SGD.Options(gamma=1.5)
    with pytest.raises(ValidationError, match=r"lr_min \(0.5\) must not exceed lr \(0.01\)"):
        SGD.Options(lr_min=0.5)
    for bad in ({"lr": 0}, {"epochs": 0}, {"batch_size": -1}, {"momentum": 1.0}, {"lrate": 1}):
        with pytest.raises(ValidationError):
            SGD.Options(**bad)


def test_adam_option_errors():
    with pytest.raises(ValidationError, match=r"each beta must be in \[0, 1\)"):
        Adam.Options(betas=[0.9, 1.0])
    assert Adam.Options(betas=[0.8, 0.99]).betas == (0.8, 0.99)
    with pytest.raises(ValidationError):
        Adam.Options(schedule="exponential")


def test_defaults():
    sgd = SGD.Options()
    assert (sgd.lr, sgd.momentum, sgd.nesterov, sgd.weight_decay) == (0.01, 0.9, False, 0.0)
    assert (sgd.epochs, sgd.batch_size, sgd.schedule, sgd.lr_min) == (10, 128, "cosine", 0.0)
    adam = Adam.Options()
    assert (adam.lr, adam.betas, adam.epochs, adam.batch_size) == (1e-3, (0.9, 0.999), 10, 128)


def test_registered_and_documented():
    registry = get_registry()
    for cls in (SGD, Adam):
        assert registry.get("optimizer", cls.name).cls is cls
        assert cls.version == "1" and cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name} has no description"


def test_multistep_schedule_drops_at_the_milestones(digits):
    ctx = FakeContext(digits)
    options = SGD.Options(lr=0.1, epochs=5, schedule="multistep", milestones=[1, 3], gamma=0.2)
    SGD(options).train(_mlp(), ctx)
    assert [v["lr"] for *_, v in ctx.logs] == pytest.approx([0.1, 0.02, 0.02, 0.004, 0.004])
    with pytest.raises(ValidationError, match="'multistep' needs milestones"):
        SGD.Options(schedule="multistep")
    with pytest.raises(ValidationError, match=r"must be increasing positive epochs, got \[3, 3\]"):
        SGD.Options(schedule="multistep", milestones=[3, 3])


def test_resolved_tables_without_milestones_are_unchanged():
    """Job ids of studies written before 'multistep' existed must not change."""
    assert "milestones" not in SGD.Options().model_dump(mode="json")
    assert "milestones" not in Adam.Options().model_dump(mode="json")
    dumped = SGD.Options(schedule="multistep", milestones=[5]).model_dump(mode="json")
    assert dumped["milestones"] == [5]
