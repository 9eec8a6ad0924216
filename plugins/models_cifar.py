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

from collections import OrderedDict
from typing import ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from benchharness import BenchError, Model, PluginOptions, hookimpl

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


def _scaled(name: str, channels: int, width: float) -> int:
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
class BasicBlock(nn.Module):
    """conv3×3(stride) → BN → ReLU → conv3×3 → BN, plus the shortcut, then ReLU."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = _shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """conv1×1 → BN → ReLU → conv3×3(stride) → BN → ReLU → conv1×1 (×4) → BN, plus the
    shortcut, then ReLU (stride on the 3×3 convolution, as in kuangliu and torchvision)."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity, or a 1×1 convolution with BN where the shape changes (option B)."""
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class CifarResNet(nn.Module):
    """conv1 (3×3, stride 1) → bn1 → ReLU → layer1..layer4 → global avg pool → fc."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        blocks: tuple[int, int, int, int],
        stage_channels: tuple[int, int, int, int],
        in_channels: int,
        num_classes: int,
    ):
        super().__init__()
        width = stage_channels[0]
        self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        current = width
        for i, (count, channels) in enumerate(zip(blocks, stage_channels, strict=True)):
            layers = []
            for j in range(count):
                stride = 2 if i > 0 and j == 0 else 1
                layers.append(block(current, channels, stride))
                current = channels * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(current, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class _ResNetOptions(PluginOptions):
    width: float = Field(
        1.0,
        gt=0,
        description="width multiplier w: the four stages have int(64w), int(128w), int(256w), "
        "int(512w) channels (×4 at the outputs of Bottleneck blocks)",
    )


class _ResNet(Model):
    block: ClassVar[type[BasicBlock] | type[Bottleneck]]
    blocks: ClassVar[tuple[int, int, int, int]]
    Options = _ResNetOptions

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        channels = _image_channels(self.name, input_shape)
        stages = tuple(_scaled(self.name, c, self.options.width) for c in STAGE_CHANNELS)
        return CifarResNet(self.block, self.blocks, stages, channels, num_classes)  # type: ignore[arg-type]


class ResNet18(_ResNet):
    """CIFAR ResNet-18: 3×3 stem, no max-pool, BasicBlocks [2, 2, 2, 2] (11.17 M params)."""

    name = "resnet18"
    version = "1"
    block = BasicBlock
    blocks = (2, 2, 2, 2)


class ResNet34(_ResNet):
    """CIFAR ResNet-34: 3×3 stem, no max-pool, BasicBlocks [3, 4, 6, 3] (21.28 M params)."""

    name = "resnet34"
    version = "1"
    block = BasicBlock
    blocks = (3, 4, 6, 3)


class ResNet50(_ResNet):
    """CIFAR ResNet-50: 3×3 stem, no max-pool, Bottlenecks [3, 4, 6, 3] (23.52 M params)."""

    name = "resnet50"
    version = "1"
    block = Bottleneck
    blocks = (3, 4, 6, 3)


class ResNetTiny(_ResNet):
    """Test-sized CIFAR ResNet: one BasicBlock per stage, width 1/8 by default (~0.08 M)."""

    name = "resnet_tiny"
    version = "1"
    block = BasicBlock
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


def vgg_network(
    layout: tuple[int | str, ...],
    width: float,
    in_channels: int,
    num_classes: int,
    *,
    head: Head = "linear",
    dropout: float = 0.5,
    batch_norm: bool = True,
    name: str = "vgg",
) -> nn.Sequential:
    """A flat ``nn.Sequential`` named conv1, bn1, relu1, ..., pool1, ..., avgpool, flatten,
    then ``fc`` (linear head) or fc1, relu_fc1, drop1, fc2, relu_fc2, drop2, fc3 (mlp).
    Without ``batch_norm`` there are no bn* layers (each conv feeds its ReLU directly)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    current, convs, pools = in_channels, 0, 0
    for item in layout:
        if item == "M":
            pools += 1
            layers[f"pool{pools}"] = nn.MaxPool2d(2)
            continue
        convs += 1
        channels = _scaled(name, int(item), width)
        layers[f"conv{convs}"] = nn.Conv2d(current, channels, 3, padding=1)
        if batch_norm:
            layers[f"bn{convs}"] = nn.BatchNorm2d(channels)
        layers[f"relu{convs}"] = nn.ReLU()
        current = channels
    layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
    layers["flatten"] = nn.Flatten()
    if head == "linear":
        layers["fc"] = nn.Linear(current, num_classes)
    else:
        for i in (1, 2):
            layers[f"fc{i}"] = nn.Linear(current, current)
            layers[f"relu_fc{i}"] = nn.ReLU()
            layers[f"drop{i}"] = nn.Dropout(dropout)
        layers["fc3"] = nn.Linear(current, num_classes)
    return nn.Sequential(layers)


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
