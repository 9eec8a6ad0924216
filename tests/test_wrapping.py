"""The wrapping contract: TrainContext.train_with / build_optimizer / report, with sgd as the
base, checked against hand-written SGD steps; old-style plugins keep working unwrapped."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from fakes import FakeContext
from torch import nn

from benchharness import BenchError, Data, Optimizer
from benchharness.wrapping import Wrapping
from benchharness_plugins.datasets import Digits
from benchharness_plugins.models import LeNet300Model

SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.01, "epochs": 1}
SGD.update(batch_size=100, schedule="constant")


@pytest.fixture(scope="module")
def digits() -> Data:
    data = Digits().load(Path("unused"))
    return data.replace(train_x=data.train_x[:100], train_y=data.train_y[:100])  # one step


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return LeNet300Model(LeNet300Model.Options(hidden=[16])).build((1, 8, 8), 10)


def _grads(model: nn.Module, data: Data) -> dict[str, torch.Tensor]:
    probe = copy.deepcopy(model)
    F.cross_entropy(probe(data.train_x), data.train_y).backward()
    return {n: p.grad.clone() for n, p in probe.named_parameters()}


def test_groups_and_hooks_reach_the_base_step(digits):
    """Biases without decay (groups), fc2's gradient doubled (pre-hook), fc1.weight reset
    after the step (post-hook): each parameter moves exactly as one hand SGD step says."""
    model = _mlp()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = _grads(model, digits)
    seen: list[float] = []

    def groups(net: nn.Module, weight_decay: float):
        seen.append(weight_decay)
        named = list(net.named_parameters())
        return [
            {"params": [p for n, p in named if "bias" not in n], "weight_decay": weight_decay},
            {"params": [p for n, p in named if "bias" in n], "weight_decay": 0.0},
        ]

    def double_fc2(_optimizer):
        model.fc2.weight.grad.mul_(2)

    def restore_fc1(_optimizer):
        with torch.no_grad():
            model.fc1.weight.copy_(start["fc1.weight"])

    wrapping = Wrapping(groups, before_step=double_fc2, after_step=restore_fc1)
    returned = FakeContext(digits).train_with(model, SGD, wrapping=wrapping)
    assert returned is model and seen == [0.01]
    got = dict(model.named_parameters())
    torch.testing.assert_close(got["fc1.weight"], start["fc1.weight"])
    for name in ("fc1.bias", "fc2.bias"):
        torch.testing.assert_close(got[name], start[name] - 0.1 * grads[name])
    w = start["fc2.weight"]
    torch.testing.assert_close(got["fc2.weight"], w - 0.1 * (2 * grads["fc2.weight"] + 0.01 * w))


def test_without_a_wrapping_the_base_trains_as_on_its_own(digits):
    alone, wrapped = _mlp(), _mlp()
    from benchharness_plugins.optimizers import SGD as SGDPlugin

    options = {k: v for k, v in SGD.items() if k != "name"}
    SGDPlugin(SGDPlugin.Options(**options)).train(alone, FakeContext(digits))
    FakeContext(digits).train_with(wrapped, SGD)
    for a, b in zip(alone.parameters(), wrapped.parameters(), strict=True):
        assert torch.equal(a, b)


class _OldStyle(Optimizer):
    """An optimizer written before build_optimizer existed: plain model.parameters()."""

    name = "old_style"

    def train(self, model, ctx):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for x, y in ctx.batches(100):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        return model


def test_old_plugins_run_unwrapped_and_refuse_a_wrapping(digits):
    model = _mlp()
    before = model.fc1.weight.detach().clone()
    FakeContext(digits).train_with(model, _OldStyle())
    assert not torch.equal(model.fc1.weight, before)
    with pytest.raises(BenchError, match="optimizer old_style cannot be wrapped"):
        FakeContext(digits).train_with(_mlp(), _OldStyle(), wrapping=Wrapping())


def test_a_wrapping_inside_a_wrapping_is_an_error(digits):
    contexts = []

    class _Capture(Optimizer):
        name = "capture"
        wrappable = True

        def train(self, model, ctx):
            contexts.append(ctx)
            return model

    outer = FakeContext(digits)
    outer.train_with(_mlp(), _Capture(), wrapping=Wrapping())
    (inside,) = contexts
    assert inside.wrapping is not None and outer.wrapping is None  # the job's ctx unchanged
    assert inside.logs is outer.logs  # the base logs into the job's curves
    with pytest.raises(BenchError, match="a wrapping scheme inside another one"):
        inside.train_with(_mlp(), SGD, wrapping=Wrapping())


def test_report_prefixes_the_plugin_name_and_refuses_non_finite(digits):
    ctx = FakeContext(digits)
    ctx.report(_OldStyle(), overhead=0.25)
    assert ctx.__dict__["reported"] == {"old_style.overhead": 0.25}
    with pytest.raises(BenchError, match="old_style: metric overhead is not finite"):
        ctx.report(_OldStyle(), overhead=float("nan"))
