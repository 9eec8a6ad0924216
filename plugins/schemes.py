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

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from benchharness import (
    Optimizer,
    TrainContext,
    hookimpl,
)
from benchharness_plugins.scheme_parts import (
    DEFAULT_REFERENCE,
    CompressedEvaluator,
    SchemeOptions,
    StepOptions,
    constraint_norm,
    evaluate,
    lagrange_update,
    lc_penalty,
    log_dc,
    start,
    tensors_norm,
    train_step,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "DEFAULT_REFERENCE",
    "DC",
    "IDC",
    "LC",
    "Retrain",
    "constraint_norm",
    "lagrange_update",
]


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
        model, comp = start(self.name, model, ctx, self.options.reference)
        w = comp.weights()
        parts = comp.compress(w)
        delta = comp.decompress(parts)
        distance = constraint_norm(w, delta)
        comp.load(delta)
        log_dc(ctx, evaluate(model, ctx), distance)
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
        model, comp = start(self.name, model, ctx, o.reference)
        evaluate = CompressedEvaluator(model)
        parts = comp.compress(comp.weights())
        delta = comp.decompress(parts)
        log_dc(ctx, evaluate(model, delta, ctx), constraint_norm(comp.weights(), delta))
        planned = sum(o.step_epochs(k) for k in range(o.steps))
        done = 0
        for k in range(o.steps):
            comp.load(delta)
            lr = o.step_lr(k)
            train_loss = train_step(
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
        import torch

        o = self.options
        model, comp = start(self.name, model, ctx, o.reference)
        evaluate = CompressedEvaluator(model)
        al = o.variant == "al"
        names = list(comp.params)
        params = [comp.params[n] for n in names]

        parts = comp.compress(comp.weights(), o.mu0)
        delta = comp.decompress(parts)
        lam = {n: torch.zeros_like(p, requires_grad=False) for n, p in comp.params.items()}
        log_dc(ctx, evaluate(model, delta, ctx), constraint_norm(comp.weights(), delta))

        planned = sum(o.step_epochs(k) for k in range(o.steps))
        done = 0
        for k in range(o.steps):
            mu = o.mu0 * o.mu_growth**k
            lr = o.step_lr(k)
            if o.clip_lr:
                lr = min(lr, 1.0 / mu)
            # L step: the penalty's target is Δ(Θ) + λ/μ (AL) or Δ(Θ) (QP)
            targets = [(delta[n] + lam[n] / mu) if al else delta[n] for n in names]
            penalty = lc_penalty(params, targets, mu)
            train_loss = train_step(
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
                lagrange_norm=tensors_norm(lam),
            )
            if distance < o.tolerance:
                break
        comp.load(delta)
        ctx.set_compressed(parts)
        return model


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
        import torch

        from benchharness.training import lr_at, train_epochs

        o = self.options
        model, comp = start(self.name, model, ctx, o.reference)
        w = comp.weights()
        parts = comp.compress(w)
        delta = comp.decompress(parts)
        distance = constraint_norm(w, delta)
        comp.load(delta)
        log_dc(ctx, evaluate(model, ctx), distance)

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
        ev = evaluate(model, ctx)
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
