"""Built-in architectures: CompressedNet (width × DCT study), LeNet300 and LeNet5 (LC).

Layers are named submodules (``conv1``, ``fc1``...) because compressors select weights by
module-name glob (``layers = ["fc*"]``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from benchharness import BenchError, Model, PluginOptions, hookimpl

if TYPE_CHECKING:
    from torch import nn

# the torch modules live in models_nets (imported when a model is built); these names
# stay importable from here
_NETS = ("ConvNet", "LeNet300")


def _channels(name: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 3:
        raise BenchError(f"{name}: needs image inputs (C, H, W), got {tuple(input_shape)}")
    return input_shape[0]


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
        from torch import nn

        from benchharness_plugins.models_nets import conv_net

        channels = _channels(self.name, input_shape)
        return conv_net(
            self.name,
            nn.Conv2d(channels, c1, 3, padding=1),
            nn.Conv2d(c1, c2, 3, padding=1),
            self.options.hidden,
            input_shape,
            num_classes,
        )


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
        from benchharness_plugins.models_nets import LeNet300

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
        from torch import nn

        from benchharness_plugins.models_nets import conv_net

        channels = _channels(self.name, input_shape)
        pad = self.options.padding
        return conv_net(
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


def __getattr__(name: str) -> Any:
    if name in _NETS:
        from benchharness_plugins import models_nets

        return getattr(models_nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
