"""Built-in architectures: output shapes, hand-counted parameters, layer names."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from benchharness import BenchError
from benchharness.plugins import get_registry
from benchharness_plugins.models import CompressedNet, LeNet5, LeNet300Model

MNIST = (1, 28, 28)
DIGITS = (1, 8, 8)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build(cls, shape=MNIST, classes=10, **options) -> nn.Module:
    return cls(cls.Options(**options)).build(shape, classes)


@pytest.mark.parametrize(
    ("cls", "options", "shape"),
    [
        (CompressedNet, {}, MNIST),
        (CompressedNet, {"width": 0.5}, DIGITS),
        (CompressedNet, {"width": 2.0}, (3, 32, 32)),
        (LeNet300Model, {}, MNIST),
        (LeNet300Model, {"hidden": [40]}, DIGITS),
        (LeNet5, {}, MNIST),
        (LeNet5, {"padding": 2}, DIGITS),
    ],
)
def test_output_shape(cls, options, shape):
    model = _build(cls, shape, classes=7, **options)
    assert model(torch.randn(5, *shape)).shape == (5, 7)


def test_lenet300_parameter_count():
    assert _params(_build(LeNet300Model)) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert _params(_build(LeNet300Model)) == 266_610
    assert _params(_build(LeNet300Model, DIGITS, hidden=[20])) == 64 * 20 + 20 + 20 * 10 + 10


def test_compressednet_parameter_count():
    conv1 = 1 * 16 * 3 * 3 + 16
    conv2 = 16 * 32 * 3 * 3 + 32
    fc1 = 32 * 7 * 7 * 128 + 128  # 28 → 14 → 7 after two 2×2 pools
    fc2 = 128 * 10 + 10
    assert _params(_build(CompressedNet)) == conv1 + conv2 + fc1 + fc2 == 206_922
    # α = 0.5: 8 and 16 channels; on 8×8 digits the feature map is 16 × 2 × 2.
    half = (1 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + (16 * 2 * 2 * 128 + 128) + (128 * 10 + 10)
    assert _params(_build(CompressedNet, DIGITS, width=0.5)) == half


def test_compressednet_widths_truncate():
    model = _build(CompressedNet, width=0.7)
    assert model.conv1.out_channels == 11 and model.conv2.out_channels == 22


def test_lenet5_parameter_count():
    conv1 = 1 * 20 * 25 + 20
    conv2 = 20 * 50 * 25 + 50
    fc1 = 50 * 4 * 4 * 500 + 500  # 28 → 24 → 12 → 8 → 4
    fc2 = 500 * 10 + 10
    assert _params(_build(LeNet5)) == conv1 + conv2 + fc1 + fc2 == 431_080


def test_layer_names_for_compressor_globs():
    names = {n for n, m in _build(LeNet5).named_modules() if isinstance(m, nn.Linear | nn.Conv2d)}
    assert names == {"conv1", "conv2", "fc1", "fc2"}
    names = {n for n, m in _build(CompressedNet).named_modules() if isinstance(m, nn.Conv2d)}
    assert names == {"conv1", "conv2"}
    names = {n for n, m in _build(LeNet300Model).named_modules() if isinstance(m, nn.Linear)}
    assert names == {"fc1", "fc2", "fc3"}


def test_lenet300_activation():
    assert isinstance(_build(LeNet300Model).act1, nn.Tanh)
    assert isinstance(_build(LeNet300Model, activation="relu").act2, nn.ReLU)
    x = torch.randn(2, *MNIST)
    model = _build(LeNet300Model)
    expected = model.fc3(torch.tanh(model.fc2(torch.tanh(model.fc1(x.flatten(1))))))
    torch.testing.assert_close(model(x), expected)


def test_lenet5_forward_uses_relu_after_every_conv_and_fc1():
    model = _build(LeNet5)
    x = torch.randn(2, *MNIST)
    h = torch.max_pool2d(torch.relu(model.conv1(x)), 2)
    h = torch.max_pool2d(torch.relu(model.conv2(h)), 2)
    expected = model.fc2(torch.relu(model.fc1(h.flatten(1))))
    torch.testing.assert_close(model(x), expected)


def test_too_small_input_is_one_line_error():
    with pytest.raises(BenchError, match="padding = 2") as info:
        _build(LeNet5, DIGITS)
    assert "\n" not in str(info.value)


def test_width_too_small():
    with pytest.raises(BenchError, match="0 channels"):
        _build(CompressedNet, width=0.05)
    with pytest.raises(ValidationError):
        CompressedNet.Options(width=0)


def test_hidden_widths_are_validated():
    with pytest.raises(ValidationError, match="every width must be >= 1"):
        LeNet300Model.Options(hidden=[300, 0])
    with pytest.raises(ValidationError):
        LeNet300Model.Options(hidden=[])


def test_build_is_seeded_by_the_global_rng():
    torch.manual_seed(3)
    a = _build(CompressedNet).state_dict()
    torch.manual_seed(3)
    b = _build(CompressedNet).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_registered_and_documented():
    registry = get_registry()
    for cls in (CompressedNet, LeNet300Model, LeNet5):
        assert registry.get("model", cls.name).cls is cls
        assert cls.version == "1" and cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name} has no description"
