"""An example third-party benchharness plugin: a logistic-regression model and a
Gaussian-noise input transform."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from benchharness import Data, Model, PluginOptions, Transform, hookimpl


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
