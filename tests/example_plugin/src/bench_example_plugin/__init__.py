"""An example third-party benchharness plugin: a logistic-regression model, a
Gaussian-noise input transform, a data-free compressor (power-of-two rounding), a
data-aware one (activation-weighted pruning) and an optimizer that wraps another one
(gradient clipping, no decay on biases)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn

from benchharness import (
    BenchError,
    Compressed,
    CompressionContext,
    Compressor,
    CompressorOptions,
    Data,
    Model,
    Optimizer,
    PluginOptions,
    PluginTable,
    TrainContext,
    Transform,
    build_plugin,
    hookimpl,
)
from benchharness.coding import (
    FLOAT_BITS,
    LayerwiseWeights,
    fraction_count,
    index_bits,
    scaled_macs,
    sparse_bits,
)
from benchharness.wrapping import Wrapping


class LogReg(Model):
    """Multinomial logistic regression on the flattened input."""

    name = "logreg"
    version = "0.1.0"

    class Options(PluginOptions):
        bias: bool = Field(True, description="learn a bias per class")

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        features = 1
        for size in input_shape:
            features *= size
        return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes, bias=self.options.bias))


class GaussianNoise(Transform):
    """Adds fixed Gaussian noise to every input (same noise for the same seed)."""

    name = "gaussian_noise"
    version = "0.1.0"

    class Options(PluginOptions):
        std: float = Field(0.1, ge=0, description="standard deviation of the noise")
        seed: int = Field(0, description="seed of the noise generator")

    def apply(self, data: Data) -> Data:
        generator = torch.Generator().manual_seed(self.options.seed)

        def noisy(x: torch.Tensor) -> torch.Tensor:
            return x + self.options.std * torch.randn(x.shape, generator=generator, dtype=x.dtype)

        return data.replace(train_x=noisy(data.train_x), test_x=noisy(data.test_x))


@hookimpl
def register_models(register):
    register(LogReg)


@hookimpl
def register_transforms(register):
    register(GaussianNoise)


# ------------------------------------------------------------------ compressors
class PowerOfTwoLayer:
    """One layer of Θ: a sign bit and an exponent code per weight, and the top exponent."""

    def __init__(self, shape: torch.Size, top: int, codes: torch.Tensor, levels: int):
        self.shape, self.top, self.codes, self.levels = shape, top, codes, levels

    def dense(self) -> torch.Tensor:
        magnitude = torch.pow(2.0, (self.top - self.codes.abs() + 1).float())
        return torch.where(self.codes == 0, 0.0, torch.sign(self.codes) * magnitude).view(
            self.shape
        )

    def bits(self) -> int:
        # a sign bit + an index into {0, 2^top, ..., 2^(top-levels+1)} per weight, 32 for top
        return self.codes.numel() * (1 + index_bits(self.levels + 1)) + FLOAT_BITS

    def macs(self, dense_macs: int) -> int:
        return dense_macs  # shifts instead of multiplies, but as many of them


class PowerOfTwo(Compressor):
    """Rounds every weight to ±2^e (or 0) with e among the `levels` largest exponents.

    Data-free: usable after training, inside LC, and as a part of `additive`. Rounding is
    to the nearest exponent in log2 space; magnitudes below the smallest level become 0.
    Bits per weight: 1 sign + ⌈log2(levels + 1)⌉; plus a 32-bit top exponent per layer.
    """

    name = "pow2"
    version = "0.1.0"

    class Options(CompressorOptions):
        levels: int = Field(4, ge=1, le=64, description="number of exponents kept per layer")

    def compress(self, weights: Mapping[str, torch.Tensor]) -> Compressed:
        layers = {}
        for name, w in weights.items():
            flat = w.detach().reshape(-1).double()
            exponent = torch.round(torch.log2(flat.abs().clamp_min(1e-30)))
            top = int(exponent.max()) if flat.abs().max() > 0 else 0
            steps = (top - exponent).clamp(min=0)
            code = torch.where(steps < self.options.levels, steps + 1, 0).long()
            layers[name] = PowerOfTwoLayer(
                w.shape, top, code * torch.sign(flat).long(), self.options.levels
            )
        return LayerwiseWeights(layers)


class ActivationPruneLayer:
    """One layer of Θ: the kept weights and their flat positions."""

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor):
        self.shape = weight.shape
        self.positions = torch.nonzero(mask.reshape(-1)).squeeze(1)
        self.values = weight.reshape(-1)[self.positions].clone()

    def dense(self) -> torch.Tensor:
        out = torch.zeros(self.shape.numel(), dtype=self.values.dtype, device=self.values.device)
        out[self.positions] = self.values
        return out.view(self.shape)

    def bits(self) -> int:
        return sparse_bits(self.shape.numel(), self.positions.numel())

    def macs(self, dense_macs: int) -> int:
        return scaled_macs(dense_macs, self.positions.numel(), self.shape.numel())


class ActivationPrune(Compressor):
    """Data-aware pruning of Linear layers: keep the weights of largest |W_ij|·‖x_j‖.

    ‖x_j‖ is the norm of input feature j over calibration samples from the training
    split, so weights fed by inactive inputs go first. Keeps round(keep × inputs) weights
    in every output row. Storage: kept values + flat positions (benchharness.coding).
    """

    name = "act_prune"
    version = "0.1.0"
    data_aware = True

    class Options(CompressorOptions):
        keep: float = Field(0.5, gt=0, le=1, description="fraction of each row's weights kept")
        calibration: int = Field(
            256, ge=1, description="calibration samples from the training split"
        )

    def compress_model(self, ctx: CompressionContext) -> Compressed:
        selected = self.select(ctx.model)
        modules = [name.rsplit(".", 1)[0] for name in selected]
        batches = ctx.calibration_batches(min(self.options.calibration, ctx.train_size))
        captured = ctx.capture(ctx.model, modules, batches)
        layers = {}
        for (name, weight), module in zip(selected.items(), modules, strict=True):
            inputs = captured[module].inputs.flatten(1)
            if inputs.shape[1] != weight.shape[1]:
                raise BenchError(f"act_prune: {module} is not a Linear layer")
            score = weight.detach().abs() * inputs.norm(dim=0)
            keep = fraction_count(self.options.keep, weight.shape[1])
            mask = torch.zeros_like(score, dtype=torch.bool)
            mask.scatter_(1, score.topk(keep, dim=1).indices, True)
            layers[name] = ActivationPruneLayer(weight.detach(), mask)
        kept = sum(layer.positions.numel() for layer in layers.values())
        ctx.report(kept_fraction=kept / max(1, sum(w.numel() for w in selected.values())))
        return LayerwiseWeights(layers)


@hookimpl
def register_compressors(register):
    register(PowerOfTwo)
    register(ActivationPrune)


class Clipped(Optimizer):
    """Runs a base optimizer with the gradient norm clipped and no weight decay on biases.

    The base is any wrappable optimizer plugin (sgd, adam, ...): it keeps its own loop,
    schedule and logging; this wrapper only chooses its parameter groups and clips the
    gradients before each of its steps.
    """

    name = "clipped"
    version = "0.1.0"

    class Options(PluginOptions):
        base: Annotated[dict[str, Any], PluginTable("optimizer")] = Field(
            default_factory=lambda: {"name": "sgd"},
            description="the optimizer table to run, e.g. {name = 'sgd', lr = 0.1}",
        )
        max_norm: float = Field(1.0, gt=0, description="largest gradient norm of a step")

        @field_validator("base")
        @classmethod
        def _wrappable(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
            try:
                base = build_plugin("optimizer", value, info)
            except BenchError as error:
                raise ValueError(str(error)) from None
            if not getattr(base, "wrappable", False):
                raise ValueError(f"optimizer {value['name']} cannot be wrapped")
            return value

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        def groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
            named = list(model.named_parameters())
            weights = [p for name, p in named if not name.endswith("bias")]
            biases = [p for name, p in named if name.endswith("bias")]
            return [
                {"params": weights, "weight_decay": weight_decay},
                {"params": biases, "weight_decay": 0.0},
            ]

        def clip(optimizer: torch.optim.Optimizer) -> None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.options.max_norm)

        wrapping = Wrapping(param_groups=groups, before_step=clip)
        return ctx.train_with(model, self.options.base, wrapping=wrapping)


@hookimpl
def register_optimizers(register):
    register(Clipped)
