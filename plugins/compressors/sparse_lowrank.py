"""Sparse + low-rank layer approximation by ADMM (Ma et al., ALGORITHMS.md §3).

The numerical core (proximal maps, Algorithm 1) is in :mod:`.admm`; this module holds the
options, Θ and its bit count, the layer-by-layer (asymmetric) driver, the search for λ
that meets a target ratio and the structure-preserving fine-tuning.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from benchharness import BenchError, Compressor, CompressorOptions
from benchharness.coding import (
    FLOAT_BITS,
    as_matrix,
)

if TYPE_CHECKING:
    from torch import Tensor, nn

    from benchharness.compression import CompressionContext

    from .admm import AdmmSettings, LayerProblem
    from .sparse_lowrank_theta import SparseLowRankLayer, SparseLowRankWeights

# SparseLowRankLayer lives in sparse_lowrank_theta (imported when compressing); it stays
# importable from here
_THETA = ("SparseLowRankLayer", "SparseLowRankWeights")


# ------------------------------------------------------------------------- options
class SparseLowRankOptions(CompressorOptions):
    response: Literal["relu", "linear"] = Field(
        "relu",
        description="'relu': fit the response after the ReLU that follows the layer (layers "
        "not followed by an nn.ReLU module, e.g. the logits, fall back to linear); "
        "'linear': fit the pre-activation response",
    )
    lambda1: float | None = Field(
        None,
        gt=0,
        description="weight λ1 > 0 of ‖A‖_{2,1} (normalised units: see the class doc). "
        "Give exactly one of lambda1 and target_ratio",
    )
    lambda2: float | None = Field(
        None, ge=0, description="weight λ2 ≥ 0 of ‖B‖_*; default lambda_ratio × lambda1"
    )
    lambda_ratio: float = Field(
        2.5, gt=0, description="λ2/λ1 when lambda2 is not given, and during the target search"
    )
    target_ratio: float | None = Field(
        None,
        ge=1,
        description="search λ1 (λ2 = lambda_ratio·λ1) per layer so that every approximated "
        "layer has 32·m·n / bits(Θ_layer) ≈ target_ratio, hence the approximated layers "
        "together too (the ratio_selected metric; biases and skipped layers excluded)",
    )
    ratio_tolerance: float = Field(
        0.03, gt=0, lt=1, description="relative tolerance of the target search: stop when met"
    )
    search_steps: int = Field(
        12, ge=1, description="most ADMM runs per layer in the target search (bracket + bisection)"
    )
    skip_first_conv: bool = Field(
        True, description="leave the network's first conv layer untouched (as the paper)"
    )
    fc_sparse_only: bool = Field(
        True, description="Linear layers use the sparse part only (B = 0), as the paper"
    )
    calibration: int = Field(
        1000, ge=1, description="calibration samples N from the training split (capped at its size)"
    )
    batch_size: int = Field(256, ge=1, description="minibatch size of the M-step SGD")
    iterations: int = Field(50, ge=1, description="most ADMM iterations per layer and run")
    sgd_steps: int = Field(10, ge=1, description="SGD steps of each M-step (problem 8)")
    lr: float = Field(
        0.2,
        gt=0,
        description="M-step learning rate in normalised units (the fit term's curvature is "
        "≤ 2; the paper's 1e-3 is in its unnormalised Caffe units)",
    )
    refit_steps: int = Field(
        200,
        ge=0,
        description="after ADMM, SGD steps on the reconstruction alone over A's kept columns "
        "and U (zero columns, V fixed) to undo the relaxation's shrinkage; 0 = the paper's "
        "plain ADMM output",
    )
    momentum: float = Field(0.9, ge=0, lt=1, description="M-step SGD momentum, in [0, 1)")
    rho: float = Field(
        1.0,
        gt=0,
        description="penalty t of the augmented Lagrangian, normalised units (the paper's "
        "1e-3 is relative to its feature scale)",
    )
    tol: float = Field(
        1e-3,
        gt=0,
        description="stop ADMM when ‖Â+B̂−M̂‖ and the change of Â+B̂ are both below tol·‖W‖",
    )
    correction: bool = Field(
        True, description="apply the correction step (eq. 13, τ = 1/2, α = 3/4) each iteration"
    )
    finetune: dict[str, Any] | None = Field(
        None,
        description="optimizer table (e.g. {name = 'sgd', lr = 1e-3, epochs = 2}) to fine-tune "
        "the compressed network with its structure held (zero columns stay zero, rank ≤ r)",
    )

    @field_validator("finetune")
    @classmethod
    def _named(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not isinstance(value.get("name"), str):
            raise ValueError("the fine-tuning table needs an optimizer name, e.g. {name = 'sgd'}")
        return value

    @model_validator(mode="after")
    def _one_budget(self) -> SparseLowRankOptions:
        if (self.lambda1 is None) == (self.target_ratio is None):
            raise ValueError("give exactly one of lambda1 and target_ratio")
        if self.lambda2 is not None and self.target_ratio is not None:
            raise ValueError("lambda2 goes with lambda1; with target_ratio set lambda_ratio")
        return self

    def settings(self) -> AdmmSettings:
        from .admm import AdmmSettings

        return AdmmSettings(
            rho=self.rho,
            iterations=self.iterations,
            sgd_steps=self.sgd_steps,
            lr=self.lr,
            momentum=self.momentum,
            batch_size=self.batch_size,
            tol=self.tol,
            correction=self.correction,
        )


# ----------------------------------------------------------------------- compressor
class SparseLowRank(Compressor):
    """Sparse + low-rank layer approximation W ≈ A + B by extended ADMM (Ma et al.).

    Per approximated layer (lowered W ∈ R^{m×n}, n = c·k² for a conv) solve
    min f(A+B) + λ1‖A‖_{2,1} + λ2‖B‖_* by Algorithm 1 of the paper (see ``admm.py``): A
    column-sparse by group shrinkage, B low-rank by singular value thresholding, M by a
    few SGD steps on the reconstruction of the layer's response (after its ReLU, or
    linear) on N calibration samples, then the correction step (eq. 13). f is normalised
    by the largest eigenvalue of the layer's input second moment so that λ1, λ2, t and the
    learning rate do not depend on the feature scale (f(W+Δ) ≤ ‖Δ‖²_F for the linear
    response). Conv layers are fitted through the layer's own convolution on the captured
    input maps, not an unfolded copy (k² times smaller, same result); the bias is kept.

    Layers are approximated in module order (the forward order for the built-in models),
    each on the inputs produced by the already-approximated earlier layers and against
    the outputs of the original network (the "asymmetric" strategy). The network's first
    conv is skipped and Linear layers use A only, by default. ``target_ratio`` searches λ1
    per layer (×4/÷4 bracketing, then regula falsi in log–log) for that layer ratio.
    Not in the paper: after ADMM, ``refit_steps`` SGD steps on the reconstruction alone
    over A's kept columns and U (V and the zero columns fixed) undo the shrinkage the
    ℓ2,1 and nuclear norms leave on the kept values (without it the relaxed solution
    loses most of the accuracy before fine-tuning). ``finetune`` then trains the whole
    network with each layer parametrized as A(kept columns) + U·Vᵀ (rank r), and Θ is
    read back from it.

    Bits per layer: A as CSR (``csr_bits``: nnz 32-bit values with ⌈log2 n⌉-bit column
    indices, m + 1 row pointers) or as its kept columns (``column_sparse_bits``: 32·m per
    kept column + an n-bit mask), whichever is smaller, plus 32·r·(m + n) for U, V; capped
    at the dense 32·m·n (then the layer is stored dense); no per-layer header is counted.
    Effective MACs:
    ``dense_macs × min(nnz(A) + r·(m + n), m·n)/(m·n)``.
    """

    name = "sparse_lowrank"
    version = "1"
    Options = SparseLowRankOptions
    data_aware = True

    def compress_model(self, ctx: CompressionContext) -> SparseLowRankWeights:
        import torch
        from torch import nn

        from .admm import relu_followers
        from .sparse_lowrank_theta import SparseLowRankWeights, fine_tune_structured

        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
        o = self.options
        model = ctx.model
        modules = dict(model.named_modules())
        selected = self.select(model)
        names = [n.removesuffix(".weight") if n != "weight" else "" for n in selected]
        first_conv = next((n for n, m in model.named_modules() if isinstance(m, conv)), None)
        if o.skip_first_conv:
            names = [n for n in names if n != first_conv]
        for n in names:
            if isinstance(modules[n], conv) and modules[n].groups != 1:
                raise BenchError(f"sparse_lowrank: grouped conv {n!r} is not supported")
        if not names:
            return SparseLowRankWeights({})

        batches = ctx.calibration_batches(min(o.calibration, ctx.train_size), o.batch_size)
        followed = relu_followers(model, names, batches[0][0])
        targets = ctx.capture(model, names, batches)
        work = copy.deepcopy(model)
        work_modules = dict(work.named_modules())
        layers: dict[str, SparseLowRankLayer] = {}
        summary: list[tuple[float, float, float]] = []  # error, residual, λ1 per layer
        for i, name in enumerate(names):
            module = work_modules[name]
            inputs = ctx.capture(work, [name], batches)[name].inputs  # asymmetric: X from work
            problem = _problem(module, inputs, targets[name].outputs, followed[name], o, ctx)
            lowrank = not (o.fc_sparse_only and isinstance(module, nn.Linear))
            layer, residual, lam1 = self._fit(problem, lowrank, ctx, i)
            with torch.no_grad():
                module.weight.copy_(layer.dense())
            layers[_weight_name(name)] = layer
            error = problem.relative_error(as_matrix(layer.dense()).float())
            summary.append((error, residual, lam1))
            ctx.report(
                **{
                    f"rank.{name}": layer.rank,
                    f"kept_columns.{name}": layer.kept_columns,
                    f"ratio.{name}": _ratio(layer.shape.numel(), layer.bits()),
                    f"lambda1.{name}": lam1,
                    f"reconstruction_error.{name}": error,
                }
            )
            ctx.log(i + 1, len(names), phase="compress", error=error, rank=layer.rank)

        ctx.report(
            calibration_loss_dense=ctx.loss(model, batches),
            calibration_loss=ctx.loss(work, batches),
        )
        if o.finetune is not None:
            layers = fine_tune_structured(ctx, work, layers, o.finetune)
            ctx.report(calibration_loss_finetuned=ctx.loss(work, batches))
        theta = SparseLowRankWeights(layers)
        errors, residuals, lambdas = (
            sum(column) / len(summary) for column in zip(*summary, strict=True)
        )
        ctx.report(
            reconstruction_error=errors,
            primal_residual=residuals,
            lambda1=lambdas,
            lambda2=o.lambda2 if o.lambda2 is not None else o.lambda_ratio * lambdas,
            ratio_selected=_ratio(sum(x.shape.numel() for x in layers.values()), theta.bits()),
            bits_csr=sum(x.csr_bits() for x in layers.values()),
            bits_columns=sum(x.column_bits() for x in layers.values()),
            bits=theta.bits(),
        )
        return theta

    # ------------------------------------------------------------------ one layer
    def _fit(
        self, problem: LayerProblem, lowrank: bool, ctx: CompressionContext, index: int
    ) -> tuple[SparseLowRankLayer, float, float]:
        """One layer at the given λ1, or at the λ1 the target search finds; then the
        refit. Returns Θ of the layer, the ADMM's last primal residual and λ1."""
        from .admm import admm, refit
        from .sparse_lowrank_theta import layer_theta

        o = self.options
        settings = o.settings()

        def run(lam1: float) -> tuple[SparseLowRankLayer, float]:
            lam2 = o.lambda2 if o.lambda2 is not None else o.lambda_ratio * lam1
            result = admm(problem, lam1, lam2, lowrank, settings, ctx.generator)
            return layer_theta(problem.weight, result), result.residual

        if o.target_ratio is None:
            lam = o.lambda1
            layer, residual = run(lam)
        else:
            layer, residual, lam = self._search(problem, run, ctx, index)
        if o.refit_steps:
            a, us = refit(
                problem,
                layer.columns,
                layer.a,
                layer.us,
                layer.v,
                o.refit_steps,
                settings,
                ctx.generator,
            )
            layer = dataclasses.replace(layer, a=a, us=us)
        return layer, residual, lam

    def _search(self, problem: LayerProblem, run, ctx: CompressionContext, index: int):
        """λ1 whose layer ratio 32·m·n/bits is nearest the target (in log): start at t ×
        the median column norm of W, ×4 or ÷4 until the target is bracketed, then
        regula falsi on (log λ1, log ratio), kept inside the middle 80 % of the bracket
        (plain bisection while a side has ratio ∞, i.e. an empty layer); stop within
        ``ratio_tolerance`` or after ``search_steps`` ADMM runs."""
        import torch

        o = self.options
        numel, goal = problem.weight.numel(), math.log(o.target_ratio)
        norms = torch.linalg.vector_norm(problem.matrix.float(), dim=0)
        lam = o.rho * float(norms.median()) or 1e-3
        low: tuple[float, float] | None = None  # (log λ1, log ratio) below the target
        high: tuple[float, float] | None = None
        tried: list[tuple[float, float, SparseLowRankLayer, float]] = []
        for step in range(1, o.search_steps + 1):
            layer, residual = run(lam)
            ratio = _ratio(numel, layer.bits())
            tried.append((abs(math.log(ratio) - goal), lam, layer, residual))
            ctx.log(step, o.search_steps, phase=f"search_{index + 1}", lambda1=lam, ratio=ratio)
            if abs(ratio / o.target_ratio - 1) <= o.ratio_tolerance:
                break
            point = (math.log(lam), math.log(ratio))
            if ratio < o.target_ratio:
                low = point
            else:
                high = point
            if low is None or high is None:
                lam = lam * 4 if high is None else lam / 4
                continue
            share = 0.5
            if math.isfinite(high[1]) and high[1] > low[1]:
                share = min(max((goal - low[1]) / (high[1] - low[1]), 0.1), 0.9)
            lam = math.exp(low[0] + share * (high[0] - low[0]))
        _, lam, layer, residual = min(tried, key=lambda entry: entry[0])
        return layer, residual, lam


# -------------------------------------------------------------------------- helpers
def _weight_name(module_name: str) -> str:
    return f"{module_name}.weight" if module_name else "weight"


def _ratio(numel: int, bits: int) -> float:
    return FLOAT_BITS * numel / bits if bits else math.inf


def _problem(
    module: nn.Module,
    inputs: Tensor,
    outputs: Tensor,
    network_relu: bool,
    o: SparseLowRankOptions,
    ctx: CompressionContext,
) -> LayerProblem:
    from .admm import LayerProblem, input_curvature, layer_op

    weight = module.weight.detach()
    bias = module.bias.detach() if module.bias is not None else None
    op = layer_op(module)
    problem = LayerProblem(
        weight, bias, op, inputs, outputs, o.response == "relu" and network_relu, network_relu
    )
    probe = (1, *weight.shape[1:])
    problem.scale = input_curvature(op, probe, inputs, ctx.generator)
    return problem


def __getattr__(name: str) -> Any:
    if name in _THETA:
        from . import sparse_lowrank_theta

        return getattr(sparse_lowrank_theta, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
