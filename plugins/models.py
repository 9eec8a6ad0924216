"""Built-in architectures: CompressedNet (width × DCT study), LeNet300 and LeNet5 (LC).

Layers are named submodules (``conv1``, ``fc1``...) because compressors select weights by
module-name glob (``layers = ["fc*"]``).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor, nn

from benchharness import BenchError, Model, PluginOptions, hookimpl


def _flat_size(name: str, features: nn.Module, input_shape: tuple[int, ...], hint: str) -> int:
    """Number of features ``features`` produces for one input, found by a dry run."""
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        reason = str(exc).splitlines()[0]
        raise BenchError(
            f"{name}: input shape {tuple(input_shape)} is too small for its layers ({reason}){hint}"
        ) from None
    return out[0].numel()


def _channels(name: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 3:
        raise BenchError(f"{name}: needs image inputs (C, H, W), got {tuple(input_shape)}")
    return input_shape[0]


class ConvNet(nn.Module):
    """conv1 → relu1 → pool1 → conv2 → relu2 → pool2 → flatten → fc1 → relu3 → fc2."""

    def __init__(
        self, conv1: nn.Conv2d, conv2: nn.Conv2d, flat: int, hidden: int, num_classes: int
    ):
        super().__init__()
        self.conv1 = conv1
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = conv2
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(flat, hidden)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(torch.flatten(x, 1))))


def _conv_net(
    name: str,
    conv1: nn.Conv2d,
    conv2: nn.Conv2d,
    hidden: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    hint: str = "",
) -> ConvNet:
    features = nn.Sequential(conv1, nn.ReLU(), nn.MaxPool2d(2), conv2, nn.ReLU(), nn.MaxPool2d(2))
    flat = _flat_size(name, features, input_shape, hint)
    return ConvNet(conv1, conv2, flat, hidden, num_classes)


class CompressedNet(Model):
    """Two-conv CNN of the width × DCT study; channel widths int(16α), int(32α)."""

    name = "compressednet"
    version = "1"

    class Options(PluginOptions):
        width: float = Field(
            1.0,
            gt=0,
            description="width multiplier α: the convs have int(16α) and int(32α) channels",
        )
        hidden: int = Field(128, gt=0, description="units of the hidden fully connected layer")

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        alpha = self.options.width
        c1, c2 = int(16 * alpha), int(32 * alpha)
        if c1 < 1:
            raise BenchError(
                f"compressednet: width {alpha} gives int(16·{alpha}) = 0 channels; "
                "use width >= 0.0625"
            )
        channels = _channels(self.name, input_shape)
        return _conv_net(
            self.name,
            nn.Conv2d(channels, c1, 3, padding=1),
            nn.Conv2d(c1, c2, 3, padding=1),
            self.options.hidden,
            input_shape,
            num_classes,
        )


class LeNet300(nn.Module):
    """Flatten → fc1 → act1 → fc2 → act2 → ... → fcN (logits)."""

    def __init__(self, in_features: int, hidden: list[int], num_classes: int, activation: str):
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        act = nn.Tanh if activation == "tanh" else nn.ReLU
        self.flatten = nn.Flatten()
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1):
            self.add_module(f"fc{i}", nn.Linear(fan_in, fan_out))
            if i < len(sizes) - 1:
                self.add_module(f"act{i}", act())

    def forward(self, x: Tensor) -> Tensor:
        for module in self.children():
            x = module(x)
        return x


class LeNet300Model(Model):
    """LeNet300: the 784-300-100-10 fully connected net of the LC experiments (tanh)."""

    name = "lenet300"
    version = "1"

    class Options(PluginOptions):
        activation: Literal["tanh", "relu"] = Field(
            "tanh", description="nonlinearity after each hidden layer"
        )
        hidden: list[int] = Field(
            default_factory=lambda: [300, 100],
            min_length=1,
            description="hidden layer widths; the layers are named fc1, fc2, ... in order",
        )

        @field_validator("hidden")
        @classmethod
        def _positive(cls, value: list[int]) -> list[int]:
            if any(width < 1 for width in value):
                raise ValueError(f"every width must be >= 1, got {value}")
            return value

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return LeNet300(
            math.prod(input_shape), list(self.options.hidden), num_classes, self.options.activation
        )


class LeNet5(Model):
    """LeNet5 as in Caffe / the LC toolkit: conv 20 → pool → conv 50 → pool → fc 500 → fc."""

    name = "lenet5"
    version = "1"

    class Options(PluginOptions):
        padding: int = Field(
            0,
            ge=0,
            description="zero padding of both 5×5 convs (0 as in Caffe; 2 lets 8×8 inputs through)",
        )

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        channels = _channels(self.name, input_shape)
        pad = self.options.padding
        return _conv_net(
            self.name,
            nn.Conv2d(channels, 20, 5, padding=pad),
            nn.Conv2d(20, 50, 5, padding=pad),
            500,
            input_shape,
            num_classes,
            hint="; set [model] padding = 2 for small images" if pad < 2 else "",
        )


@hookimpl
def register_models(register):
    register(CompressedNet)
    register(LeNet300Model)
    register(LeNet5)
