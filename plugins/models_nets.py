"""The torch modules of :mod:`benchharness_plugins.models`, imported only when a model is
built (so listing or validating plugins does not import torch)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from benchharness import BenchError

__all__ = ["ConvNet", "LeNet300", "conv_net"]


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


def conv_net(
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
