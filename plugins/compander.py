"""The weight compander (Cakaj et al., ../shared/papers/weight-compander.md) as an optimizer
plugin that wraps another one: the model's Linear/Conv weights become Ψ(v) =
a·arctan(v/b) (:mod:`benchharness_plugins.compander_reparam`), the base optimizer (any
``wrappable`` plugin: ``sgd``, ``adam``, a third-party one) trains v (and, when
learnable, a and b) through :meth:`benchharness.TrainContext.train_with`, and the
returned model holds the plain weights w = Ψ(v).

Weight decay, with λ the base's ``weight_decay`` (torch's convention: λ·w is added to
∂L/∂w, the gradient of λ/2·‖w‖²):

* ``fixed``: on Ψ(v), not on v, as the paper does to compare with a plain network. The
  base's group of v has no decay; the step pre-hook adds ∂(λ/2·‖Ψ(v)‖²)/∂v =
  λ·Ψ(v)·Ψ′(v) to v's gradient. That is exactly the baseline's decay of w carried
  through the chain rule, without a second autograd graph, and the logged training loss
  stays the cross-entropy, comparable with the baseline's.
* ``coarse`` / ``fine`` (learnable a, b): the base's decay on v, none on a and b.

Biases and normalisation parameters keep the base's decay, as in the baseline.

``modified_adaptive``: the base's step is computed from ∂L/∂Ψ (v's gradient divided by
Ψ′(v), plus λ·Ψ(v) when fixed), then multiplied by Ψ′(v) (the paper's modified adaptive
optimizer, from Powerpropagation): meant for Adam, whose step is otherwise invariant to
Ψ′'s rescaling.

Overhead: after training, ``overhead_steps`` interleaved training steps of the base's
torch optimizer on a plain copy of the model and of the companded one on a copy of the
reparameterised model, on the same batch, are timed; the median step times are stored
as ``compander.step_ms`` and ``compander.base_step_ms``, and ``compander.overhead`` =
step_ms / base_step_ms − 1 (the paper reports 7–14 % on GPU; on a shared CPU the probe
is noisy at the level of a few per cent).
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from benchharness import (
    BenchError,
    Optimizer,
    PluginOptions,
    PluginTable,
    TrainContext,
    build_plugin,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from benchharness.wrapping import Wrapping
    from benchharness_plugins.compander_reparam import Companded

__all__ = ["Compander", "CompanderOptions", "CompanderRun"]


class CompanderOptions(PluginOptions):
    base: Annotated[dict[str, Any], PluginTable("optimizer")] = Field(
        default_factory=lambda: {"name": "sgd"},
        description="the optimizer table that trains v (and learnable a, b), e.g. {name = "
        "'sgd', lr = 0.1, weight_decay = 1e-4, ...}; any wrappable optimizer plugin",
    )
    variant: Literal["fixed", "coarse", "fine", "none"] = Field(
        "fixed",
        description="'fixed': the given (a, b) for every layer, weight decay on Ψ(v); "
        "'coarse': one learnable (a, b) for the whole model; 'fine': one learnable (a, b) "
        "per layer; learnable variants decay v only, never a and b; 'none': the base alone, "
        "no reparameterisation (the baseline as an axis value of optimizer.variant)",
    )
    a: float = Field(
        0.5,
        gt=0,
        description="Ψ's scale a (|w| < aπ/2); the value when fixed, the initial value when "
        "learnable (the paper's learnable init: 0.5)",
    )
    b: float = Field(
        1.0,
        gt=0,
        description="Ψ's stretch b; the value when fixed, the initial value when learnable "
        "(the paper's learnable init: 1.0)",
    )
    modified_adaptive: bool = Field(
        False,
        description="compute the base's step from ∂L/∂Ψ and multiply it by Ψ′(v) (the "
        "paper's modified adaptive optimizer, for Adam)",
    )
    scale_lr: float = Field(
        1.0,
        gt=0,
        description="learnable variants: a and b's gradients are multiplied by this before "
        "the base's step (with SGD, their learning rate relative to v's); 1 = the paper",
    )
    overhead_steps: int = Field(
        20,
        ge=0,
        description="timed training steps of the base alone and of the compander, for "
        "compander.overhead; 0 = do not measure",
    )

    @field_validator("base")
    @classmethod
    def _wrappable_base(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not isinstance(value.get("name"), str):
            raise ValueError("needs a `name` (a wrappable optimizer plugin, e.g. 'sgd')")
        try:
            plugin = build_plugin("optimizer", value, info)
        except BenchError as error:
            raise ValueError(str(error)) from None
        if not getattr(plugin, "wrappable", False):
            raise ValueError(
                f"optimizer {value['name']} cannot be wrapped (it does not build its torch "
                "optimizers with ctx.build_optimizer); use e.g. sgd or adam"
            )
        return value


class CompanderRun:
    """The compander's hooks into the base optimizer for one reparameterised model."""

    def __init__(self, companded: list[Companded], options: CompanderOptions):
        self.companded = companded
        self.options = options
        self.fixed = options.variant == "fixed"
        self.decay = 0.0  # the base's weight decay, learnt when it builds its optimizer
        self.template: torch.optim.Optimizer | None = None
        self._before: dict[str, tuple[Tensor, Tensor]] = {}

    def wrapping(self) -> Wrapping:
        from benchharness.wrapping import Wrapping

        return Wrapping(self.param_groups, self.before_step, self.after_step)

    def scale_parameters(self) -> list[nn.Parameter]:
        unique: dict[int, nn.Parameter] = {}
        for layer in self.companded:
            for p in layer.scale.parameters():
                unique.setdefault(id(p), p)
        return list(unique.values())

    def param_groups(self, model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
        self.decay = weight_decay
        vs = [layer.v for layer in self.companded]
        scales = self.scale_parameters()
        special = {id(p) for p in vs + scales}
        others = [p for p in model.parameters() if id(p) not in special]
        groups = [{"params": others, "weight_decay": weight_decay}] if others else []
        groups.append({"params": vs, "weight_decay": 0.0 if self.fixed else weight_decay})
        if scales:
            groups.append({"params": scales, "weight_decay": 0.0})
        return groups

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        import torch

        from benchharness_plugins.compander_reparam import psi, psi_prime

        with torch.no_grad():
            if self.template is None:
                self.template = optimizer
            decay = self.decay if self.fixed else 0.0
            modified = self.options.modified_adaptive
            self._before.clear()
            if self.options.scale_lr != 1.0:
                for p in self.scale_parameters():
                    if p.grad is not None:
                        p.grad.mul_(self.options.scale_lr)
            for layer in self.companded:
                v = layer.v
                if v.grad is None or not (decay or modified):
                    continue
                a, b = layer.scale.a.detach(), layer.scale.b.detach()
                slope = psi_prime(v, a, b)
                if modified:  # the base steps on ∂L/∂Ψ (+ λΨ); after_step rescales by Ψ′(v)
                    v.grad.div_(slope)
                    if decay:
                        v.grad.add_(psi(v, a, b), alpha=decay)
                    self._before[layer.name] = (v.detach().clone(), slope)
                else:
                    v.grad.add_(psi(v, a, b) * slope, alpha=decay)

    def after_step(self, _optimizer: torch.optim.Optimizer) -> None:
        import torch

        with torch.no_grad():
            for layer in self.companded:
                if layer.name in self._before:
                    v0, slope = self._before[layer.name]
                    layer.v.copy_(v0 - slope * (v0 - layer.v))
            self._before.clear()


class Compander(Optimizer):
    """Weight compander: train every Linear/Conv weight as Ψ(v) = a·arctan(v/b) with a base
    optimizer, then export plain weights w = Ψ(v).

    v0 = b·tan(w0/a) keeps the model's initialisation (needs |w0| < aπ/2: a one-line error
    otherwise). Variants: fixed (a, b), decay on Ψ(v); learnable coarse (one pair) or
    fine (a pair per layer), decay on v only. Curves: the base's, plus phase
    ``compander`` with the final (a, b) of each layer (``<layer>.a``, ``<layer>.b``) and
    the probe's ``overhead``, ``step_ms``, ``base_step_ms``, also stored as
    ``compander.overhead``, ``compander.step_ms``, ``compander.base_step_ms``.
    """

    name = "compander"
    version = "1"
    Options = CompanderOptions

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        from benchharness_plugins.compander_reparam import export

        o = self.options
        model.to(ctx.device)
        if o.variant == "none":
            return ctx.train_with(model, o.base)
        # the probe's copies are taken before Ψ is registered: deep copies of a
        # parametrized module share its class, whose properties `export` deletes
        initial = copy.deepcopy(model) if o.overhead_steps else None
        run = CompanderRun(self._compand(model), o)
        companded = run.companded
        trained = ctx.train_with(model, o.base, wrapping=run.wrapping())
        if trained is not model:
            raise BenchError(
                f"compander: base optimizer {o.base['name']} returned another model than "
                "the one it was given; a wrapped optimizer must train the model in place"
            )
        timing: dict[str, float] = {}
        if initial is not None and run.template is not None:
            step_ms, base_ms = self._probe(initial, run.template, ctx)
            timing = {
                "overhead": step_ms / base_ms - 1,
                "step_ms": step_ms,
                "base_step_ms": base_ms,
            }
            ctx.report(self, **timing)
        ctx.log(1, 1, phase="compander", **_scales(companded), **timing)
        export(companded)
        return model

    def _compand(self, model: nn.Module) -> list[Companded]:
        from benchharness_plugins.compander_reparam import compand

        o = self.options
        per_layer, learnable = o.variant == "fine", o.variant != "fixed"
        return compand(model, a=o.a, b=o.b, per_layer=per_layer, learnable=learnable)

    def _probe(
        self, initial: nn.Module, template: torch.optim.Optimizer, ctx: TrainContext
    ) -> tuple[float, float]:
        """Median ms of one training step (compander, base alone) on copies of the initial
        model, with the base's torch optimizer and settings, interleaved, on one batch."""
        from benchharness.wrapping import build_torch_optimizer

        x, y = next(iter(ctx.batches(int(self.options.base.get("batch_size", 128)), shuffle=False)))
        plain, companded = initial, copy.deepcopy(initial)
        run = CompanderRun(self._compand(companded), self.options)
        kind, settings = type(template), dict(template.defaults)
        decay = settings.pop("weight_decay", 0.0)
        runs = {
            "plain": (plain, build_torch_optimizer(None, kind, plain, decay, settings)),
            "companded": (
                companded,
                build_torch_optimizer(run.wrapping(), kind, companded, decay, settings),
            ),
        }
        timings: dict[str, list[float]] = {"companded": [], "plain": []}
        warmup = 3
        for i in range(warmup + self.options.overhead_steps):
            for key, (net, opt) in runs.items():
                seconds = _timed_step(net, opt, x, y, ctx.device)
                if i >= warmup:
                    timings[key].append(seconds)
        return (
            1000 * statistics.median(timings["companded"]),
            1000 * statistics.median(timings["plain"]),
        )


def _scales(companded: list[Companded]) -> dict[str, float]:
    values: dict[str, float] = {}
    for layer in companded:
        values[f"{layer.name}.a"] = float(layer.scale.a.detach())
        values[f"{layer.name}.b"] = float(layer.scale.b.detach())
    return values


def _timed_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor, device: torch.device
) -> float:
    import torch
    import torch.nn.functional as F

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
