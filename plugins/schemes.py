"""Training schemes built on the spec's compressors: DC, iDC, LC and prune-and-retrain.

All four start from a *reference* model, trained by another optimizer plugin through
:meth:`~benchharness.TrainContext.train_reference` and cached by the hash of its
configuration, so the DC, iDC, LC and retrain jobs of one study share it. They use the
spec's ``[compressor]`` tables (``ctx.compressors``) as the compression mapping Π; each
compressor is applied to its own ``select(model)`` weights (the selections must be
disjoint) and Θ is one :class:`~benchharness.Compressed` per compressor. Every scheme
returns the model holding Δ(Θ) and reports Θ with ``ctx.set_compressed``, so what is
evaluated, stored and counted in bits is exactly the compressed model.

* ``dc`` — direct compression: Θ = Π(w̄).
* ``idc`` — iterated DC: repeat {train on the plain loss starting from Δ(Θ); Θ = Π(w)}.
* ``lc`` — the learning-compression algorithm (Carreira-Perpiñán 2017, fig. 2), augmented
  Lagrangian or quadratic penalty: for μ_k = μ0·a^k, L step = SGD on
  loss + μ/2‖w − Δ(Θ) − λ/μ‖², C step Θ = Π(w − λ/μ), λ ← λ − μ(w − Δ(Θ)).
* ``retrain`` — compress once, then fine-tune with every weight that Δ(Θ) sets to 0
  held at 0 (pruning then retraining the survivors).

Curves (``ctx.log`` phases): ``reference_eval`` (the reference's test loss/accuracy),
``dc`` (Θ_DC), ``lc`` / ``idc`` (one point per step: test loss and accuracy *of Δ(Θ)*,
``constraint_norm`` = ‖w − Δ(Θ)‖ over the compressed weights, and for LC ``mu``, ``lr``,
``lagrange_norm``), ``lc_l`` / ``idc_train`` / ``retrain`` (per epoch, from
:func:`~benchharness.training.train_epochs`: these evaluate the *uncompressed* w).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from benchharness import (
    BenchError,
    Compressed,
    Compressor,
    Evaluation,
    Optimizer,
    PluginOptions,
    PluginTable,
    TrainContext,
    check_compressed,
    hookimpl,
)
from benchharness.training import lr_at, train_epochs

__all__ = [
    "DEFAULT_REFERENCE",
    "DC",
    "IDC",
    "LC",
    "Retrain",
    "constraint_norm",
    "lagrange_update",
]

# The reference recipe every scheme uses unless told otherwise. Keep the four schemes'
# defaults identical: the reference cache is keyed by this table.
DEFAULT_REFERENCE: dict[str, Any] = {
    "name": "sgd",
    "lr": 0.1,
    "momentum": 0.9,
    "nesterov": True,
    "epochs": 60,
    "batch_size": 256,
    "schedule": "cosine",
}


# ------------------------------------------------------------------------ the maths
def lagrange_update(lam: Tensor, w: Tensor, delta: Tensor, mu: float) -> Tensor:
    """The multiplier step of the augmented Lagrangian: λ − μ(w − Δ(Θ))."""
    return lam - mu * (w - delta)


def constraint_norm(w: Mapping[str, Tensor], delta: Mapping[str, Tensor]) -> float:
    """‖w − Δ(Θ)‖ over all compressed weights together (the LC stopping criterion)."""
    total = sum(float((w[n].double() - delta[n].double()).pow(2).sum()) for n in w)
    return math.sqrt(total)


def _norm(tensors: Mapping[str, Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors.values()))


@dataclasses.dataclass
class _Block:
    """One compressor and the parameters it selects."""

    compressor: Compressor
    params: dict[str, nn.Parameter]


class _Compression:
    """The spec's compressors bound to a model: the C step and loading Δ(Θ)."""

    def __init__(self, model: nn.Module, compressors: list[Compressor], scheme: str):
        named = dict(model.named_parameters())
        owner: dict[str, str] = {}
        self.blocks: list[_Block] = []
        for compressor in compressors:
            selected = compressor.select(model)
            for name in selected:
                if name in owner:
                    raise BenchError(
                        f"optimizer {scheme}: compressors '{owner[name]}' and "
                        f"'{compressor.name}' both select {name}; use the `additive` "
                        "compressor to combine them on one tensor"
                    )
                owner[name] = compressor.name
            if selected:
                self.blocks.append(_Block(compressor, {n: named[n] for n in selected}))
        if not self.blocks:
            raise BenchError(
                f"optimizer {scheme}: the [compressor] tables select no weights of this "
                "model (check their `layers` patterns)"
            )
        self.params: dict[str, nn.Parameter] = {
            n: p for block in self.blocks for n, p in block.params.items()
        }

    def weights(self) -> dict[str, Tensor]:
        """The current w of the compressed parameters (detached, not copied)."""
        return {n: p.detach() for n, p in self.params.items()}

    def compress(self, weights: Mapping[str, Tensor], mu: float | None = None) -> list[Compressed]:
        """Θ = Π(weights), one part per compressor; ``mu`` given → ``with_mu(mu)`` first."""
        parts = []
        for block in self.blocks:
            compressor = block.compressor if mu is None else block.compressor.with_mu(mu)
            selected = {n: weights[n] for n in block.params}
            parts.append(check_compressed(compressor.name, compressor.compress(selected), selected))
        return parts

    def decompress(self, parts: list[Compressed]) -> dict[str, Tensor]:
        """Δ(Θ) for every compressed parameter, on the parameters' device and dtype."""
        delta: dict[str, Tensor] = {}
        for part in parts:
            for name, value in part.decompress().items():
                p = self.params[name]
                delta[name] = value.detach().to(device=p.device, dtype=p.dtype)
        missing = set(self.params) - set(delta)
        if missing:
            raise BenchError(f"a compressor's Δ(Θ) lacks {sorted(missing)}")
        return delta

    def load(self, delta: Mapping[str, Tensor]) -> None:
        """Set the compressed parameters of the model to Δ(Θ)."""
        with torch.no_grad():
            for name, value in delta.items():
                self.params[name].copy_(value)


class _CompressedEvaluator:
    """Evaluates Δ(Θ) on a shadow copy of the model, leaving the trained w untouched."""

    def __init__(self, model: nn.Module):
        self.shadow = copy.deepcopy(model)
        self.params = dict(self.shadow.named_parameters())

    def __call__(
        self, model: nn.Module, delta: Mapping[str, Tensor], ctx: TrainContext
    ) -> Evaluation:
        with torch.no_grad():
            for (name, p), (_, q) in zip(
                self.shadow.named_parameters(), model.named_parameters(), strict=True
            ):
                p.copy_(delta[name] if name in delta else q)
            for b, c in zip(self.shadow.buffers(), model.buffers(), strict=True):
                b.copy_(c)
            return ctx.evaluate(self.shadow)


def _evaluate(model: nn.Module, ctx: TrainContext) -> Evaluation:
    with torch.no_grad():
        return ctx.evaluate(model)


# ----------------------------------------------------------------------- options
def _reference_field() -> Any:
    return Field(
        default_factory=lambda: dict(DEFAULT_REFERENCE),
        description="optimizer table that trains the reference (uncompressed) model, e.g. "
        "{name = 'sgd', lr = 0.1, epochs = 60, ...}; the trained reference is cached by "
        "(dataset, data, transforms, model, seed, this table), so schemes with the same "
        "table share it. Default: " + ", ".join(f"{k} = {v}" for k, v in DEFAULT_REFERENCE.items()),
    )


class SchemeOptions(PluginOptions):
    """What every compression scheme has: how its reference model is trained."""

    reference: Annotated[dict[str, Any], PluginTable("optimizer")] = _reference_field()

    @field_validator("reference")
    @classmethod
    def _named(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("name"), str) or not value["name"]:
            raise ValueError("needs a `name` (an optimizer plugin, e.g. 'sgd')")
        return value


class StepOptions(SchemeOptions):
    """The step-wise SGD schedule shared by iDC and LC (the LC toolkit's L step)."""

    steps: int = Field(
        40, ge=1, description="number of steps (LC: μ values; iDC: retrain/compress rounds)"
    )
    epochs_per_step: int = Field(
        20, ge=1, description="training epochs of each step after the first"
    )
    first_step_epochs: int = Field(40, ge=1, description="training epochs of the first step")
    lr: float = Field(
        0.09,
        gt=0,
        description="learning rate of step 0; step k uses lr·lr_decay^k (constant within the step)",
    )
    lr_decay: float = Field(0.98, gt=0, le=1, description="per-step lr factor, in (0, 1]")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum, in [0, 1)")
    nesterov: bool = Field(True, description="Nesterov momentum (needs momentum > 0)")
    batch_size: int = Field(256, gt=0, description="minibatch size")

    def step_lr(self, k: int) -> float:
        return self.lr * self.lr_decay**k

    def step_epochs(self, k: int) -> int:
        return self.first_step_epochs if k == 0 else self.epochs_per_step

    def sgd(self, model: nn.Module, lr: float) -> torch.optim.SGD:
        """A fresh SGD for one step (momentum buffers start at zero, as in the toolkit)."""
        return torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=self.momentum,
            nesterov=self.nesterov and self.momentum > 0,
        )


def _start(
    scheme: str, model: nn.Module, ctx: TrainContext, reference: Mapping[str, Any]
) -> tuple[nn.Module, _Compression]:
    """Check for compressors, train/load the reference, evaluate and log it."""
    if not ctx.compressors:
        raise BenchError(
            f"optimizer {scheme} compresses with the spec's compressors, but the job has "
            "none: add a [compressor] table (e.g. name = 'quantize', k = 2)"
        )
    model.to(ctx.device)
    model = ctx.train_reference(model, dict(reference))
    model.to(ctx.device)
    ev = _evaluate(model, ctx)
    ctx.log(1, 1, phase="reference_eval", test_loss=ev.loss, test_accuracy=ev.accuracy)
    return model, _Compression(model, list(ctx.compressors), scheme)


def _log_dc(ctx: TrainContext, ev: Evaluation, distance: float) -> None:
    ctx.log(
        1, 1, phase="dc", test_loss=ev.loss, test_accuracy=ev.accuracy, constraint_norm=distance
    )


# ------------------------------------------------------------------------ schemes
class DC(Optimizer):
    """Direct compression: train (or load) the reference, then compress it once.

    Θ = Π(w̄) with each compressor as configured (``with_mu`` is not called: a μ-dependent
    compressor such as ``lowrank_select`` uses its own ``mu`` option).
    """

    name = "dc"
    version = "1"
    Options = SchemeOptions
    uses_compressors = True

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        model, comp = _start(self.name, model, ctx, self.options.reference)
        w = comp.weights()
        parts = comp.compress(w)
        delta = comp.decompress(parts)
        distance = constraint_norm(w, delta)
        comp.load(delta)
        _log_dc(ctx, _evaluate(model, ctx), distance)
        ctx.set_compressed(parts)
        return model


class IDC(Optimizer):
    """Iterated direct compression: repeat {train on the plain loss from Δ(Θ); compress}."""

    name = "idc"
    version = "1"
    Options = StepOptions
    uses_compressors = True

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        o = self.options
        model, comp = _start(self.name, model, ctx, o.reference)
        evaluate = _CompressedEvaluator(model)
        parts = comp.compress(comp.weights())
        delta = comp.decompress(parts)
        _log_dc(ctx, evaluate(model, delta, ctx), constraint_norm(comp.weights(), delta))
        planned = sum(o.step_epochs(k) for k in range(o.steps))
        done = 0
        for k in range(o.steps):
            comp.load(delta)
            lr = o.step_lr(k)
            train_loss = _train_step(
                model, ctx, o, k, lr, phase="idc_train", done=done, planned=planned
            )
            done += o.step_epochs(k)
            parts = comp.compress(comp.weights())
            delta = comp.decompress(parts)
            ev = evaluate(model, delta, ctx)
            ctx.log(
                k + 1,
                o.steps,
                phase="idc",
                test_loss=ev.loss,
                test_accuracy=ev.accuracy,
                constraint_norm=constraint_norm(comp.weights(), delta),
                lr=lr,
                train_loss=train_loss,
            )
        comp.load(delta)
        ctx.set_compressed(parts)
        return model


class LCOptions(StepOptions):
    mu0: float = Field(9e-5, gt=0, description="μ of the first step (μ_k = mu0·mu_growth^k)")
    mu_growth: float = Field(1.1, gt=1, description="a > 1: the multiplicative μ schedule's factor")
    tolerance: float = Field(
        1e-3,
        ge=0,
        description="stop after the C step once ‖w − Δ(Θ)‖ (all compressed weights) is "
        "below this; 0 = always run every step",
    )
    variant: Literal["al", "qp"] = Field(
        "al",
        description="'al': augmented Lagrangian (λ ← λ − μ(w − Δ(Θ)) after each C step); "
        "'qp': quadratic penalty (λ ≡ 0)",
    )
    clip_lr: bool = Field(
        True,
        description="clip the L step's learning rate to min(lr_k, 1/μ_k) (the paper's eq. 17, "
        "stated per SGD iteration; the base lr is constant within an L step, so it is one "
        "value per step)",
    )


class LC(Optimizer):
    """The LC algorithm: alternate an L step (SGD on loss + μ/2‖w − Δ(Θ) − λ/μ‖²) and a C step.

    Starts from the reference w̄ and Θ = Π(w̄) (DC, with the compressor at μ0), λ = 0;
    then for μ_k = mu0·mu_growth^k: L step (fresh Nesterov SGD at lr·lr_decay^k, clipped
    to 1/μ_k; first_step_epochs for k = 0, else epochs_per_step), C step
    Θ = Π(w − λ/μ) with ``compressor.with_mu(μ_k)``, λ ← λ − μ(w − Δ(Θ)) (AL only);
    stops once ‖w − Δ(Θ)‖ < tolerance. Returns Δ(Θ). The penalty covers only the
    compressed (selected) weights: biases and other layers train freely.
    """

    name = "lc"
    version = "1"
    Options = LCOptions
    uses_compressors = True

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        o = self.options
        model, comp = _start(self.name, model, ctx, o.reference)
        evaluate = _CompressedEvaluator(model)
        al = o.variant == "al"
        names = list(comp.params)
        params = [comp.params[n] for n in names]

        parts = comp.compress(comp.weights(), o.mu0)
        delta = comp.decompress(parts)
        lam = {n: torch.zeros_like(p, requires_grad=False) for n, p in comp.params.items()}
        _log_dc(ctx, evaluate(model, delta, ctx), constraint_norm(comp.weights(), delta))

        planned = sum(o.step_epochs(k) for k in range(o.steps))
        done = 0
        for k in range(o.steps):
            mu = o.mu0 * o.mu_growth**k
            lr = o.step_lr(k)
            if o.clip_lr:
                lr = min(lr, 1.0 / mu)
            # L step: the penalty's target is Δ(Θ) + λ/μ (AL) or Δ(Θ) (QP)
            targets = [(delta[n] + lam[n] / mu) if al else delta[n] for n in names]
            penalty = _penalty(params, targets, mu)
            train_loss = _train_step(
                model, ctx, o, k, lr, phase="lc_l", done=done, planned=planned, penalty=penalty
            )
            done += o.step_epochs(k)
            # C step on w − λ/μ
            w = comp.weights()
            shifted = {n: w[n] - lam[n] / mu for n in names} if al else w
            parts = comp.compress(shifted, mu)
            delta = comp.decompress(parts)
            if al:
                lam = {n: lagrange_update(lam[n], w[n], delta[n], mu) for n in names}
            distance = constraint_norm(w, delta)
            ev = evaluate(model, delta, ctx)
            ctx.log(
                k + 1,
                o.steps,
                phase="lc",
                mu=mu,
                lr=lr,
                constraint_norm=distance,
                test_loss=ev.loss,
                test_accuracy=ev.accuracy,
                train_loss=train_loss,
                lagrange_norm=_norm(lam),
            )
            if distance < o.tolerance:
                break
        comp.load(delta)
        ctx.set_compressed(parts)
        return model


def _train_step(
    model: nn.Module,
    ctx: TrainContext,
    o: StepOptions,
    k: int,
    lr: float,
    *,
    phase: str,
    done: int,
    planned: int,
    penalty: Callable[[], Tensor] | None = None,
) -> float:
    """Step k's training (iDC's retraining, LC's L step) at a constant lr: a fresh SGD for
    ``o.step_epochs(k)`` epochs, logged as epochs ``done+1..`` of ``planned``. Returns the
    last epoch's mean training loss."""
    losses = train_epochs(
        model,
        ctx,
        o.sgd(model, lr),
        epochs=o.step_epochs(k),
        batch_size=o.batch_size,
        lr_for_epoch=lambda _epoch: lr,
        penalty=penalty,
        phase=phase,
        step_offset=done,
        total=planned,
    )
    return losses[-1]


def _penalty(params: list[nn.Parameter], targets: list[Tensor], mu: float) -> Callable[[], Tensor]:
    """``μ/2·Σ‖w − target‖²`` over the compressed parameters, as a closure for train_epochs."""
    half_mu = mu / 2
    pairs = list(zip(params, targets, strict=True))

    def penalty() -> Tensor:
        return half_mu * torch.stack([(w - t).pow(2).sum() for w, t in pairs]).sum()

    return penalty


class RetrainOptions(SchemeOptions):
    epochs: int = Field(20, ge=1, description="fine-tuning epochs after the compression")
    lr: float = Field(0.01, gt=0, description="initial fine-tuning learning rate")
    schedule: Literal["constant", "cosine", "step"] = Field(
        "cosine", description="epoch-wise lr schedule (see sgd)"
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum, in [0, 1)")
    nesterov: bool = Field(True, description="Nesterov momentum (needs momentum > 0)")
    batch_size: int = Field(256, gt=0, description="minibatch size")


class Retrain(Optimizer):
    """Compress the reference once, then fine-tune with the zeros of Δ(Θ) held at zero.

    mask = (Δ(Θ) ≠ 0) per compressed weight; the gradients of masked-out entries are
    zeroed, so they stay exactly 0 (no weight decay is used). Other parameters (biases,
    uncompressed layers) train freely. The result is re-compressed with the same
    compressor: for ℓ0 pruning (``prune``, ``prune_structured``) the fixed mask is a
    fixed point of Π, so Δ(Θ) equals the fine-tuned weights and the bits are the
    compressor's own count (32-bit survivors + their positions). For other compressors
    (e.g. quantisation, where Δ(Θ) has no zeros) the final re-compression re-projects
    the fine-tuned weights, which makes this one round of iDC; ``recompress_distance``
    in the ``retrain_final`` curve shows how far that moved them.
    """

    name = "retrain"
    version = "1"
    Options = RetrainOptions
    uses_compressors = True

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        o = self.options
        model, comp = _start(self.name, model, ctx, o.reference)
        w = comp.weights()
        parts = comp.compress(w)
        delta = comp.decompress(parts)
        distance = constraint_norm(w, delta)
        comp.load(delta)
        _log_dc(ctx, _evaluate(model, ctx), distance)

        masks = {n: (delta[n] != 0).to(delta[n].dtype) for n in comp.params}
        handles = [p.register_hook(lambda g, m=masks[n]: g * m) for n, p in comp.params.items()]
        try:
            opt = torch.optim.SGD(
                model.parameters(),
                lr=o.lr,
                momentum=o.momentum,
                nesterov=o.nesterov and o.momentum > 0,
            )
            train_epochs(
                model,
                ctx,
                opt,
                epochs=o.epochs,
                batch_size=o.batch_size,
                lr_for_epoch=lambda e: lr_at(e, lr=o.lr, epochs=o.epochs, schedule=o.schedule),
                phase="retrain",
            )
        finally:
            for handle in handles:
                handle.remove()
        with torch.no_grad():
            for n, p in comp.params.items():
                p.mul_(masks[n])  # a no-op unless something bypassed the gradient mask
        tuned = comp.weights()
        parts = comp.compress(tuned)
        delta = comp.decompress(parts)
        moved = constraint_norm(tuned, delta)
        comp.load(delta)
        ev = _evaluate(model, ctx)
        ctx.log(
            1,
            1,
            phase="retrain_final",
            test_loss=ev.loss,
            test_accuracy=ev.accuracy,
            recompress_distance=moved,
        )
        ctx.set_compressed(parts)
        return model


@hookimpl
def register_optimizers(register):
    register(DC)
    register(IDC)
    register(LC)
    register(Retrain)
