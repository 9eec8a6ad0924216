"""The torch modules of :mod:`benchharness_plugins.models_cifar` (CIFAR ResNets and VGGs),
imported only when a model is built (so listing or validating plugins does not import
torch)."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from benchharness_plugins.models_cifar import scaled_channels

if TYPE_CHECKING:
    from benchharness_plugins.models_cifar import Head

__all__ = ["BasicBlock", "Bottleneck", "CifarResNet", "vgg_network"]


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
        channels = scaled_channels(name, int(item), width)
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
