"""The weight compander: Ψ's maths against float64 references, decay on the right tensor in
each variant, the modified adaptive step, the bound |w| < aπ/2, and the exported model.

LeNet5 on 64–256 real MNIST images keeps every test to a few training steps."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from fakes import FakeContext
from pydantic import ValidationError
from torch.nn.utils import parametrize
from torch.optim.optimizer import register_optimizer_step_post_hook

from benchharness import BenchError, Data
from benchharness_plugins.compander import Compander
from benchharness_plugins.compander_reparam import compand, export
from benchharness_plugins.datasets import MNIST
from benchharness_plugins.models import LeNet5


@pytest.fixture(scope="module")
def mnist(data_dir) -> Data:
    data = MNIST(MNIST.Options(normalize="mnist")).load(data_dir)
    return data.replace(
        train_x=data.train_x[:256],
        train_y=data.train_y[:256],
        test_x=data.test_x[:128],
        test_y=data.test_y[:128],
    )


def _one_batch(data: Data, n: int = 64) -> Data:
    """``n`` training images: with batch_size n an epoch is exactly one step."""
    return data.replace(train_x=data.train_x[:n], train_y=data.train_y[:n])


def _lenet(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return LeNet5().build((1, 28, 28), 10)


def _weights(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _psi64(v, a, b):
    return a * torch.atan(v.double() / b)


def _slope64(v, a, b):
    v = v.double()
    return a / (b * (1 + (v / b) ** 2))


LAYERS = ["conv1", "conv2", "fc1", "fc2"]


# --------------------------------------------------------------------- Ψ itself
def test_init_reproduces_the_models_own_weights():
    model = _lenet()
    before = _weights(model)
    companded = compand(model, a=0.5, b=1.0, per_layer=False, learnable=False)
    assert [layer.name for layer in companded] == LAYERS
    for layer in companded:
        w0 = before[f"{layer.name}.weight"]
        v0 = layer.v.detach()
        torch.testing.assert_close(
            v0.double(), 1.0 * torch.tan(w0.double() / 0.5), atol=1e-6, rtol=0
        )
        assert (layer.module.weight - w0).abs().max() <= 1e-6
        # biases are not reparameterised
        assert not parametrize.is_parametrized(layer.module, "bias")


def test_a_weight_outside_the_range_is_a_clear_error():
    model = _lenet()
    with torch.no_grad():
        model.fc1.weight[0, 0] = 0.9  # aπ/2 = 0.785 for a = 0.5
    with pytest.raises(BenchError, match=r"fc1\.weight has \|w\| up to 0\.9, outside .*a = 0\.5"):
        compand(model, a=0.5, b=1.0, per_layer=False, learnable=False)
    assert not parametrize.is_parametrized(model.conv1)  # nothing changed before the check


def test_gradient_identity_against_a_plain_copy(mnist):
    """∂L/∂v = ∂L/∂w·Ψ′(v), with ∂L/∂w from an ordinary network holding w = Ψ(v)."""
    model = _lenet()
    companded = compand(model, a=0.8, b=0.5, per_layer=False, learnable=False)
    with torch.no_grad():  # move v away from its init so Ψ′ varies
        for layer in companded:
            layer.v.mul_(3.0)
    plain = _lenet()
    plain.load_state_dict({n: p.detach() for n, p in _plain_state(model).items()})
    x, y = mnist.train_x[:32], mnist.train_y[:32]
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(plain(x), y).backward()
    for layer in companded:
        grad_w = plain.get_submodule(layer.name).weight.grad.double()
        expected = grad_w * _slope64(layer.v.detach(), 0.8, 0.5)
        torch.testing.assert_close(layer.v.grad.double(), expected, rtol=1e-4, atol=1e-9)
        assert expected.abs().max() > 0


def _plain_state(model) -> dict[str, torch.Tensor]:
    """The parametrized model's state with each Ψ(v) evaluated, under plain names."""
    state = {}
    for name, module in model.named_modules():
        for pname in ("weight", "bias"):
            if isinstance(getattr(module, pname, None), torch.Tensor) and name:
                state[f"{name}.{pname}"] = getattr(module, pname).detach().clone()
    return state


def test_learnable_a_and_b_receive_their_gradients(mnist):
    """∂L/∂a = Σ ∂L/∂w·arctan(v/b), ∂L/∂b = Σ ∂L/∂w·(−a·v/(b² + v²)) per layer (fine)."""
    model = _lenet()
    companded = compand(model, a=0.5, b=1.0, per_layer=True, learnable=True)
    plain = _lenet()
    plain.load_state_dict(_plain_state(model))
    x, y = mnist.train_x[:32], mnist.train_y[:32]
    F.cross_entropy(model(x), y).backward()
    F.cross_entropy(plain(x), y).backward()
    for layer in companded:
        g = plain.get_submodule(layer.name).weight.grad.double()
        v = layer.v.detach().double()
        grad_a = float((g * torch.atan(v / 1.0)).sum())
        grad_b = float((g * (-0.5 * v / (1.0 + v**2))).sum())
        assert layer.scale.a.grad is not None and layer.scale.b.grad is not None
        assert float(layer.scale.a.grad) == pytest.approx(grad_a, rel=1e-4, abs=1e-9)
        assert float(layer.scale.b.grad) == pytest.approx(grad_b, rel=1e-4, abs=1e-9)
        assert abs(grad_a) > 0 and abs(grad_b) > 0
    assert len({id(layer.scale) for layer in companded}) == 4  # a pair per layer


def test_coarse_shares_one_pair():
    companded = compand(_lenet(), a=0.5, b=1.0, per_layer=False, learnable=True)
    assert len({id(layer.scale) for layer in companded}) == 1
    assert companded[0].scale.a.requires_grad


# ---------------------------------------------------- one step through the plugin
def _one_step(data, variant, *, base, modified=False, a=0.5, b=1.0):
    """Run the compander for one step; return (initial plain state, initial v, exported
    model, its logs)."""
    model = _lenet()
    ctx = FakeContext(_one_batch(data), seed=3)
    options = Compander.Options(
        variant=variant, a=a, b=b, base=base, modified_adaptive=modified, overhead_steps=0
    )
    before = _weights(model)
    trained = Compander(options).train(model, ctx)
    return before, trained, ctx


def _grads_at(before, data):
    """∂L/∂w and ∂L/∂bias of the initial network on the one batch (a plain copy)."""
    plain = _lenet()
    plain.load_state_dict(before)
    batch = _one_batch(data)
    F.cross_entropy(plain(batch.train_x), batch.train_y).backward()
    return {n: p.grad.double() for n, p in plain.named_parameters()}


SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.05, "epochs": 1}
SGD.update(batch_size=64, schedule="constant")


def test_fixed_decays_psi_of_v_not_v(mnist):
    """v1 = v0 − η(∂L/∂w + λΨ(v0))·Ψ′(v0); biases keep the base's decay."""
    before, model, _ctx = _one_step(mnist, "fixed", base=SGD)
    grads = _grads_at(before, mnist)
    eta, lam, a, b = 0.1, 0.05, 0.5, 1.0
    for name in LAYERS:
        w0 = before[f"{name}.weight"].double()
        v0 = b * torch.tan(w0 / a)
        v1 = v0 - eta * (grads[f"{name}.weight"] + lam * w0) * _slope64(v0, a, b)
        got = model.get_submodule(name).weight.detach().double()
        torch.testing.assert_close(got, _psi64(v1, a, b), rtol=1e-4, atol=1e-7)
        bias0 = before[f"{name}.bias"].double()
        expected_bias = bias0 - eta * (grads[f"{name}.bias"] + lam * bias0)
        torch.testing.assert_close(
            model.get_submodule(name).bias.detach().double(), expected_bias, rtol=1e-4, atol=1e-7
        )


def test_fine_decays_v_and_not_a_or_b(mnist):
    """v1 = v0 − η(∂L/∂w·Ψ′(v0) + λv0); a1 = a0 − η∂L/∂a, b1 = b0 − η∂L/∂b (no decay)."""
    before, model, ctx = _one_step(mnist, "fine", base=SGD)
    grads = _grads_at(before, mnist)
    eta, lam, a0, b0 = 0.1, 0.05, 0.5, 1.0
    (scales,) = [values for _s, _t, phase, values in ctx.logs if phase == "compander"]
    for name in LAYERS:
        g = grads[f"{name}.weight"]
        v0 = b0 * torch.tan(before[f"{name}.weight"].double() / a0)
        a1 = a0 - eta * float((g * torch.atan(v0 / b0)).sum())
        b1 = b0 - eta * float((g * (-a0 * v0 / (b0**2 + v0**2))).sum())
        assert scales[f"{name}.a"] == pytest.approx(a1, rel=1e-4)
        assert scales[f"{name}.b"] == pytest.approx(b1, rel=1e-4)
        v1 = v0 - eta * (g * _slope64(v0, a0, b0) + lam * v0)
        got = model.get_submodule(name).weight.detach().double()
        torch.testing.assert_close(got, _psi64(v1, a1, b1), rtol=1e-4, atol=1e-7)


def test_coarse_decays_v_and_not_the_shared_pair(mnist):
    """One (a, b) for all layers: its gradient is the sum over layers, with no decay."""
    before, model, ctx = _one_step(mnist, "coarse", base=SGD)
    grads = _grads_at(before, mnist)
    eta, lam, a0, b0 = 0.1, 0.05, 0.5, 1.0
    v0 = {n: b0 * torch.tan(before[f"{n}.weight"].double() / a0) for n in LAYERS}
    grad_a = sum(float((grads[f"{n}.weight"] * torch.atan(v0[n] / b0)).sum()) for n in LAYERS)
    grad_b = sum(
        float((grads[f"{n}.weight"] * (-a0 * v0[n] / (b0**2 + v0[n] ** 2))).sum()) for n in LAYERS
    )
    a1, b1 = a0 - eta * grad_a, b0 - eta * grad_b
    (scales,) = [values for _s, _t, phase, values in ctx.logs if phase == "compander"]
    for name in LAYERS:
        assert scales[f"{name}.a"] == pytest.approx(a1, rel=1e-4)
        assert scales[f"{name}.b"] == pytest.approx(b1, rel=1e-4)
        g = grads[f"{name}.weight"]
        v1 = v0[name] - eta * (g * _slope64(v0[name], a0, b0) + lam * v0[name])
        got = model.get_submodule(name).weight.detach().double()
        torch.testing.assert_close(got, _psi64(v1, a1, b1), rtol=1e-4, atol=1e-7)


def test_modified_adaptive_scales_adams_step_by_the_slope(mnist):
    """Adam's first step is lr·ĝ/(|ĝ| + ε) of ∂L/∂Ψ; the compander multiplies it by Ψ′(v0)."""
    adam = {"name": "adam", "lr": 1e-3, "epochs": 1, "batch_size": 64, "schedule": "constant"}
    before, model, _ctx = _one_step(mnist, "fixed", base=adam, modified=True, a=0.8, b=0.5)
    grads = _grads_at(before, mnist)
    for name in LAYERS:
        w0, g = before[f"{name}.weight"].double(), grads[f"{name}.weight"]
        v0 = 0.5 * torch.tan(w0 / 0.8)
        adam_step = 1e-3 * g / (g.abs() + 1e-8)
        v1 = v0 - _slope64(v0, 0.8, 0.5) * adam_step
        got = model.get_submodule(name).weight.detach().double()
        # Adam's first step is ≈ ±lr whatever |g|: where |g| is near float32 noise (about
        # 1e-8, Adam's ε) its sign is not determined, so those few weights are left out
        clear = (g.abs() > 1e-6) | (g == 0)
        assert clear.double().mean() > 0.99
        torch.testing.assert_close(got[clear], _psi64(v1, 0.8, 0.5)[clear], rtol=1e-4, atol=1e-7)
        assert (got - w0).abs().max() > 1e-4


# ------------------------------------------------------------ training as a whole
def test_weights_stay_inside_the_bound_throughout_training(mnist):
    """|w| < aπ/2 after every step, with a small a and a large lr pushing against it."""
    a = 0.15
    bound = a * math.pi / 2
    largest: list[float] = []

    def check(optimizer, _args, _kwargs):
        for group in optimizer.param_groups:
            for v in group["params"]:
                if v.dim() > 1:  # the v of a weight: what Ψ makes of it
                    largest.append(float(_psi64(v.detach(), a, 0.1).abs().max()))

    handle = register_optimizer_step_post_hook(check)
    try:
        model = _lenet()
        base = {"name": "sgd", "lr": 1.0, "epochs": 3, "batch_size": 32}
        options = Compander.Options(variant="fixed", a=a, b=0.1, base=base, overhead_steps=0)
        Compander(options).train(model, FakeContext(mnist))
    finally:
        handle.remove()
    assert len(largest) == 3 * 8 * 4  # 3 epochs × 8 batches × 4 layers
    assert max(largest) < bound
    assert max(largest) > 0.9 * bound  # the bound was actually pressed against
    weights = [p.detach() for n, p in model.named_parameters() if "weight" in n]
    assert max(float(w.abs().max()) for w in weights) < bound


def test_exported_model_is_plain_and_computes_the_same(mnist):
    model = _lenet()
    companded = compand(model, a=0.7, b=0.7, per_layer=True, learnable=True)
    with torch.no_grad():
        for layer in companded:
            layer.v.mul_(2.0)
            layer.scale.a.add_(0.1)
    x = mnist.test_x[:64]
    with torch.no_grad():
        parametrised = model(x)
    export(companded)
    with torch.no_grad():
        exported = model(x)
    assert torch.equal(parametrised, exported)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert sorted(model.state_dict()) == sorted(_lenet().state_dict())
    assert all(type(p) is torch.nn.Parameter for p in model.parameters())


def test_plugin_learns_reports_overhead_and_returns_a_plain_model(mnist):
    model = _lenet()
    ctx = FakeContext(mnist)
    base = {"name": "sgd", "lr": 0.05, "epochs": 2, "batch_size": 32}
    options = Compander.Options(variant="fixed", a=1.0, b=0.6, base=base, overhead_steps=2)
    returned = Compander(options).train(model, ctx)
    assert returned is model
    train = [values for _s, _t, phase, values in ctx.logs if phase == "train"]
    assert len(train) == 2 and train[-1]["test_accuracy"] > 0.5
    reported = ctx.__dict__["reported"]
    assert set(reported) == {"compander.overhead", "compander.step_ms", "compander.base_step_ms"}
    assert reported["compander.step_ms"] > 0 and reported["compander.base_step_ms"] > 0
    assert reported["compander.overhead"] == pytest.approx(
        reported["compander.step_ms"] / reported["compander.base_step_ms"] - 1
    )
    assert not any(parametrize.is_parametrized(m) for m in model.modules())


def test_options_name_a_base_that_cannot_be_wrapped():
    with pytest.raises(ValidationError, match="optimizer lc cannot be wrapped"):
        Compander.Options(base={"name": "lc"})
    with pytest.raises(ValidationError, match="unknown optimizer 'sgdd'"):
        Compander.Options(base={"name": "sgdd"})
    with pytest.raises(ValidationError, match="lr"):
        Compander.Options(base={"name": "sgd", "lr": -1})
    with pytest.raises(ValidationError):
        Compander.Options(variant="medium")
    assert copy.deepcopy(Compander.Options()).base == {"name": "sgd"}


def test_variant_none_is_the_base_alone(mnist):
    base = {"name": "sgd", "lr": 0.05, "epochs": 1, "batch_size": 64, "weight_decay": 1e-3}
    alone, through = _lenet(), _lenet()
    from benchharness_plugins.optimizers import SGD as SGDPlugin

    SGDPlugin(SGDPlugin.Options(**{k: v for k, v in base.items() if k != "name"})).train(
        alone, FakeContext(mnist)
    )
    ctx = FakeContext(mnist)
    Compander(Compander.Options(variant="none", base=base)).train(through, ctx)
    for p, q in zip(alone.parameters(), through.parameters(), strict=True):
        assert torch.equal(p, q)
    assert [phase for _s, _t, phase, _v in ctx.logs] == ["train"]  # no probe, no (a, b)


def test_trained_model_cache_key_covers_the_base_optimizers_version():
    from pathlib import Path

    from benchharness.jobcontext import training_inputs
    from benchharness.matrix import load_jobs
    from benchharness.plugins import get_registry

    spec = Path(__file__).resolve().parents[1] / "specs" / "mnist_compander.toml"
    _spec, jobs = load_jobs(spec, get_registry())
    job = next(j for j in jobs if j.config["optimizer"]["name"] == "compander")
    versions = training_inputs(job, get_registry())["versions"]
    assert versions["optimizer:compander"] == "1" and versions["optimizer:sgd"] == "1"
