"""CIFAR-style ResNets (18/34/50) and VGGs with batch norm (16/19), each with a width
multiplier, plus test-sized variants (``resnet_tiny``, ``vgg_tiny``) that keep tests fast.

The layouts are the ones CIFAR papers use (kuangliu/pytorch-cifar): a ResNet starts with
one 3×3 convolution at stride 1 and no max-pool, then four stages of BasicBlocks (18, 34)
or Bottlenecks (50, expansion 4) at 64·w, 128·w, 256·w, 512·w channels, the last three
starting with stride 2, then global average pooling and one linear layer ``fc``. A VGG is
the configuration's 3×3 convolutions (each followed by batch norm and ReLU) with a 2×2
max-pool after each group, global average pooling and either one linear layer
``fc`` (``head = "linear"``: 512·w → classes, the kuangliu head) or a 512·w → 512·w →
512·w → classes MLP with ReLU and dropout (``head = "mlp"``, the original VGG layout
scaled to CIFAR).

Layer names are what compressors glob: ``conv1``, ``layer2.0.conv2``, ``layer2.0.shortcut.0``,
``fc`` in a ResNet; ``conv1`` … ``conv13``, ``bn1`` …, ``fc`` (or ``fc1``/``fc2``/``fc3``)
in a VGG, in forward order. Weights keep torch's default initialisation. ReLUs are not
in place, so hooks that capture a layer's output (calibration, activation statistics)
see it as the layer produced it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from benchharness import BenchError, Model, PluginOptions, hookimpl

if TYPE_CHECKING:
    from torch import nn

    from benchharness_plugins.models_cifar_nets import (
        BasicBlock,
        Bottleneck,
        CifarResNet,
        vgg_network,
    )

__all__ = [
    "CIFAR_MODELS",
    "VGG_LAYOUTS",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "ResNetTiny",
    "VGG16",
    "VGG19",
    "VGGTiny",
    "vgg_network",
]

STAGE_CHANNELS = (64, 128, 256, 512)
# the torch modules live in models_cifar_nets (imported when a model is built); these
# names stay importable from here
_NETS = ("BasicBlock", "Bottleneck", "CifarResNet", "vgg_network")


def scaled_channels(name: str, channels: int, width: float) -> int:
    scaled = int(channels * width)
    if scaled < 1:
        raise BenchError(
            f"{name}: width {width} gives int({channels}·{width}) = 0 channels; "
            f"use width >= {1 / channels:g}"
        )
    return scaled


def _image_channels(name: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 3:
        raise BenchError(f"{name}: needs image inputs (C, H, W), got {tuple(input_shape)}")
    return input_shape[0]


# --------------------------------------------------------------------------- ResNet
class _ResNetOptions(PluginOptions):
    width: float = Field(
        1.0,
        gt=0,
        description="width multiplier w: the four stages have int(64w), int(128w), int(256w), "
        "int(512w) channels (×4 at the outputs of Bottleneck blocks)",
    )


class _ResNet(Model):
    block: ClassVar[Literal["basic", "bottleneck"]]  # BasicBlock or Bottleneck
    blocks: ClassVar[tuple[int, int, int, int]]
    Options = _ResNetOptions

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        from benchharness_plugins.models_cifar_nets import BasicBlock, Bottleneck, CifarResNet

        channels = _image_channels(self.name, input_shape)
        stages = tuple(scaled_channels(self.name, c, self.options.width) for c in STAGE_CHANNELS)
        block = BasicBlock if self.block == "basic" else Bottleneck
        return CifarResNet(block, self.blocks, stages, channels, num_classes)  # type: ignore[arg-type]


class ResNet18(_ResNet):
    """CIFAR ResNet-18: 3×3 stem, no max-pool, BasicBlocks [2, 2, 2, 2] (11.17 M params)."""

    name = "resnet18"
    version = "1"
    block = "basic"
    blocks = (2, 2, 2, 2)


class ResNet34(_ResNet):
    """CIFAR ResNet-34: 3×3 stem, no max-pool, BasicBlocks [3, 4, 6, 3] (21.28 M params)."""

    name = "resnet34"
    version = "1"
    block = "basic"
    blocks = (3, 4, 6, 3)


class ResNet50(_ResNet):
    """CIFAR ResNet-50: 3×3 stem, no max-pool, Bottlenecks [3, 4, 6, 3] (23.52 M params)."""

    name = "resnet50"
    version = "1"
    block = "bottleneck"
    blocks = (3, 4, 6, 3)


class ResNetTiny(_ResNet):
    """Test-sized CIFAR ResNet: one BasicBlock per stage, width 1/8 by default (~0.08 M)."""

    name = "resnet_tiny"
    version = "1"
    block = "basic"
    blocks = (1, 1, 1, 1)

    class Options(_ResNetOptions):
        width: float = Field(
            0.125,
            gt=0,
            description="width multiplier w: stages of int(64w), int(128w), int(256w), "
            "int(512w) channels",
        )


# ------------------------------------------------------------------------------ VGG
# Channels of each 3×3 convolution; "M" is a 2×2 max-pool.
VGG_LAYOUTS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ),
    "vgg19": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    ),
}

Head = Literal["linear", "mlp"]


class _VGGOptions(PluginOptions):
    width: float = Field(
        1.0,
        gt=0,
        description="width multiplier w: every convolution has int(c·w) of its c channels "
        "(64 ... 512), the head takes int(512w) features",
    )
    head: Head = Field(
        "linear",
        description="classifier after global average pooling: 'linear' = one layer "
        "512w → classes (the common CIFAR VGG); 'mlp' = 512w → 512w → 512w → classes with "
        "ReLU and dropout",
    )
    dropout: float = Field(
        0.5, ge=0, lt=1, description="dropout probability of the 'mlp' head, in [0, 1)"
    )
    batch_norm: bool = Field(
        True,
        description="batch norm after every convolution (VGG-BN); false = plain VGG, whose "
        "convs feed their ReLUs directly (what ReLU-response compressors such as "
        "sparse_lowrank look for)",
    )


class _VGG(Model):
    layout: ClassVar[str]
    Options = _VGGOptions

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        channels = _image_channels(self.name, input_shape)
        pools = VGG_LAYOUTS[self.layout].count("M")
        if min(input_shape[1:]) < 2**pools:
            raise BenchError(
                f"{self.name}: input shape {tuple(input_shape)} is too small for its {pools} "
                f"2×2 max-pools (needs height and width >= {2**pools})"
            )
        from benchharness_plugins.models_cifar_nets import vgg_network

        o = self.options
        return vgg_network(
            VGG_LAYOUTS[self.layout],
            o.width,
            channels,
            num_classes,
            head=o.head,
            dropout=o.dropout,
            batch_norm=o.batch_norm,
            name=self.name,
        )


class VGG16(_VGG):
    """CIFAR VGG-16 with batch norm: 13 3×3 convs, 5 max-pools, linear head (14.73 M)."""

    name = "vgg16"
    version = "1"
    layout = "vgg16"


class VGG19(_VGG):
    """CIFAR VGG-19 with batch norm: 16 3×3 convs, 5 max-pools, linear head (20.04 M)."""

    name = "vgg19"
    version = "1"
    layout = "vgg19"


class VGGTiny(_VGG):
    """Test-sized CIFAR VGG: the VGG-11 layout (8 convs, 5 max-pools) at width 1/8."""

    name = "vgg_tiny"
    version = "1"
    layout = "vgg11"

    class Options(_VGGOptions):
        width: float = Field(
            0.125,
            gt=0,
            description="width multiplier w: every convolution has int(c·w) of its c channels "
            "(64 ... 512)",
        )


CIFAR_MODELS: tuple[type[Model], ...] = (
    ResNet18,
    ResNet34,
    ResNet50,
    ResNetTiny,
    VGG16,
    VGG19,
    VGGTiny,
)


@hookimpl
def register_models(register):
    for cls in CIFAR_MODELS:
        register(cls)


def __getattr__(name: str) -> Any:
    if name in _NETS:
        from benchharness_plugins import models_cifar_nets

        return getattr(models_cifar_nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
