"""What the compression schemes (:mod:`benchharness_plugins.schemes`) share: the default
reference recipe, the LC maths (Lagrange update, ‖w − Δ(Θ)‖), Θ for the spec's
compressors over disjoint weight selections, evaluation of Δ(Θ), the schemes' common
options, and the constant-lr training step of iDC's retraining and LC's L step.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, field_validator

from benchharness import (
    BenchError,
    Compressed,
    Compressor,
    Evaluation,
    PluginOptions,
    PluginTable,
    TrainContext,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

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


def tensors_norm(tensors: Mapping[str, Tensor]) -> float:
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors.values()))


@dataclasses.dataclass
class Block:
    """One compressor and the parameters it selects."""

    compressor: Compressor
    params: dict[str, nn.Parameter]


class Compression:
    """The spec's compressors bound to a model: the C step and loading Δ(Θ)."""

    def __init__(self, model: nn.Module, compressors: list[Compressor], scheme: str):
        named = dict(model.named_parameters())
        owner: dict[str, str] = {}
        self.blocks: list[Block] = []
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
                self.blocks.append(Block(compressor, {n: named[n] for n in selected}))
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
        from benchharness.compression import check_compressed

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
        import torch

        with torch.no_grad():
            for name, value in delta.items():
                self.params[name].copy_(value)


class CompressedEvaluator:
    """Evaluates Δ(Θ) on a shadow copy of the model, leaving the trained w untouched."""

    def __init__(self, model: nn.Module):
        self.shadow = copy.deepcopy(model)
        self.params = dict(self.shadow.named_parameters())

    def __call__(
        self, model: nn.Module, delta: Mapping[str, Tensor], ctx: TrainContext
    ) -> Evaluation:
        import torch

        with torch.no_grad():
            for (name, p), (_, q) in zip(
                self.shadow.named_parameters(), model.named_parameters(), strict=True
            ):
                p.copy_(delta[name] if name in delta else q)
            for b, c in zip(self.shadow.buffers(), model.buffers(), strict=True):
                b.copy_(c)
            return ctx.evaluate(self.shadow)


def evaluate(model: nn.Module, ctx: TrainContext) -> Evaluation:
    import torch

    with torch.no_grad():
        return ctx.evaluate(model)


# ----------------------------------------------------------------------- options
def reference_field() -> Any:
    return Field(
        default_factory=lambda: dict(DEFAULT_REFERENCE),
        description="optimizer table that trains the reference (uncompressed) model, e.g. "
        "{name = 'sgd', lr = 0.1, epochs = 60, ...}; the trained reference is cached by "
        "(dataset, data, transforms, model, seed, this table), so schemes with the same "
        "table share it. Default: " + ", ".join(f"{k} = {v}" for k, v in DEFAULT_REFERENCE.items()),
    )


class SchemeOptions(PluginOptions):
    """What every compression scheme has: how its reference model is trained."""

    reference: Annotated[dict[str, Any], PluginTable("optimizer")] = reference_field()

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
        import torch

        return torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=self.momentum,
            nesterov=self.nesterov and self.momentum > 0,
        )


def start(
    scheme: str, model: nn.Module, ctx: TrainContext, reference: Mapping[str, Any]
) -> tuple[nn.Module, Compression]:
    """Check for compressors, train/load the reference, evaluate and log it."""
    if not ctx.compressors:
        raise BenchError(
            f"optimizer {scheme} compresses with the spec's compressors, but the job has "
            "none: add a [compressor] table (e.g. name = 'quantize', k = 2)"
        )
    model.to(ctx.device)
    model = ctx.train_reference(model, dict(reference))
    model.to(ctx.device)
    ev = evaluate(model, ctx)
    ctx.log(1, 1, phase="reference_eval", test_loss=ev.loss, test_accuracy=ev.accuracy)
    return model, Compression(model, list(ctx.compressors), scheme)


def log_dc(ctx: TrainContext, ev: Evaluation, distance: float) -> None:
    ctx.log(
        1, 1, phase="dc", test_loss=ev.loss, test_accuracy=ev.accuracy, constraint_norm=distance
    )


def train_step(
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
    from benchharness.training import train_epochs

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


def lc_penalty(
    params: list[nn.Parameter], targets: list[Tensor], mu: float
) -> Callable[[], Tensor]:
    """``μ/2·Σ‖w − target‖²`` over the compressed parameters, as a closure for train_epochs."""
    import torch

    half_mu = mu / 2
    pairs = list(zip(params, targets, strict=True))

    def penalty() -> Tensor:
        return half_mu * torch.stack([(w - t).pow(2).sum() for w, t in pairs]).sum()

    return penalty
