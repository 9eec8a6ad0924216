"""CIFAR ResNets and VGGs: hand-counted and published parameter counts, shapes, layout."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from benchharness import BenchError
from benchharness.plugins import get_registry
from benchharness_plugins.models_cifar import (
    CIFAR_MODELS,
    VGG16,
    VGG19,
    ResNet18,
    ResNet34,
    ResNet50,
    ResNetTiny,
    VGGTiny,
)

CIFAR = (3, 32, 32)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _build(cls, shape=CIFAR, classes=10, **options) -> nn.Module:
    return cls(cls.Options(**options)).build(shape, classes)


def _on_meta(cls, shape=CIFAR, classes=10, **options) -> nn.Module:
    """Built without allocating or initialising memory: enough to count parameters."""
    with torch.device("meta"):
        return _build(cls, shape, classes, **options)


# ------------------------------------------------------------------ hand counts
def _conv(cin: int, cout: int, k: int, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def _bn(c: int) -> int:
    return 2 * c  # weight and bias; running stats are buffers


def _resnet_count(kind: str, blocks, width=1.0, cin=3, classes=10) -> int:
    stages = [int(c * width) for c in (64, 128, 256, 512)]
    expansion = 4 if kind == "bottleneck" else 1
    total = _conv(cin, stages[0], 3) + _bn(stages[0])
    current = stages[0]
    for i, (count, c) in enumerate(zip(blocks, stages, strict=True)):
        for j in range(count):
            stride = 2 if i > 0 and j == 0 else 1
            out = c * expansion
            if kind == "basic":
                total += _conv(current, c, 3) + _bn(c) + _conv(c, c, 3) + _bn(c)
            else:
                total += _conv(current, c, 1) + _bn(c) + _conv(c, c, 3) + _bn(c)
                total += _conv(c, out, 1) + _bn(out)
            if stride != 1 or current != out:
                total += _conv(current, out, 1) + _bn(out)
            current = out
    return total + current * classes + classes


def _vgg_count(convs, width=1.0, cin=3, classes=10, head="linear", bn=True) -> int:
    total, current = 0, cin
    for c in convs:
        c = int(c * width)
        total += _conv(current, c, 3, bias=True) + (_bn(c) if bn else 0)
        current = c
    if head == "mlp":
        total += 2 * (current * current + current)
    return total + current * classes + classes


VGG16_CONVS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
VGG19_CONVS = [64, 64, 128, 128, 256, 256, 256, 256, *[512] * 8]


@pytest.mark.parametrize(
    ("cls", "hand", "published"),
    [
        (ResNet18, _resnet_count("basic", (2, 2, 2, 2)), 11_173_962),
        (ResNet34, _resnet_count("basic", (3, 4, 6, 3)), 21_282_122),
        (ResNet50, _resnet_count("bottleneck", (3, 4, 6, 3)), 23_520_842),
        (VGG16, _vgg_count(VGG16_CONVS), 14_728_266),
        (VGG19, _vgg_count(VGG19_CONVS), 20_040_522),
    ],
    ids=lambda v: getattr(v, "name", str(v)),
)
def test_parameter_counts_match_hand_counts_and_the_published_ones(cls, hand, published):
    """The published counts are those of the common CIFAR implementations (kuangliu's
    pytorch-cifar: ResNet-18 11.17 M, VGG-16 14.73 M with one 512 → 10 linear layer)."""
    assert hand == published
    assert _params(_on_meta(cls)) == published


@pytest.mark.parametrize("width", [0.5, 0.25])
def test_width_multiplier_counts(width):
    assert _params(_on_meta(ResNet18, width=width)) == _resnet_count(
        "basic", (2, 2, 2, 2), width=width
    )
    assert _params(_on_meta(ResNet50, width=width, classes=100)) == _resnet_count(
        "bottleneck", (3, 4, 6, 3), width=width, classes=100
    )
    assert _params(_on_meta(VGG16, width=width)) == _vgg_count(VGG16_CONVS, width=width)


def test_vgg_mlp_head_count_and_layers():
    model = _on_meta(VGG16, head="mlp")
    assert _params(model) == _vgg_count(VGG16_CONVS, head="mlp") == 15_253_578
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert linears == ["fc1", "fc2", "fc3"]
    assert model.fc1.in_features == 512 and model.fc3.out_features == 10


def test_tiny_variants_are_small_and_counted():
    assert _params(_build(ResNetTiny)) == _resnet_count("basic", (1, 1, 1, 1), width=0.125)
    vgg11 = [64, 128, 256, 256, 512, 512, 512, 512]
    assert _params(_build(VGGTiny)) == _vgg_count(vgg11, width=0.125)
    assert _params(_build(ResNetTiny)) < 100_000 and _params(_build(VGGTiny)) < 200_000


@pytest.mark.parametrize(
    ("cls", "options", "shape", "classes"),
    [
        (ResNetTiny, {}, CIFAR, 10),
        (ResNetTiny, {"width": 0.0625}, (1, 28, 28), 7),  # MNIST-sized, odd sizes
        (ResNet50, {"width": 0.0625}, CIFAR, 100),
        (VGGTiny, {}, CIFAR, 10),
        (VGG19, {"width": 0.0625, "head": "mlp"}, (3, 40, 36), 5),
    ],
)
def test_output_shape(cls, options, shape, classes):
    model = _build(cls, shape, classes, **options)
    assert model(torch.randn(3, *shape)).shape == (3, classes)


def test_resnet_layout_is_the_cifar_one():
    model = _on_meta(ResNet18)
    assert (model.conv1.kernel_size, model.conv1.stride) == ((3, 3), (1, 1))
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    # Stage i > 1 halves the resolution in its first block, and only there.
    strides = {n: m.stride for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert strides["layer1.0.conv1"] == (1, 1) and strides["layer2.0.conv1"] == (2, 2)
    assert strides["layer2.1.conv1"] == (1, 1) and strides["layer4.0.shortcut.0"] == (2, 2)
    assert "layer1.0.shortcut.0" not in strides  # identity shortcut where shapes agree
    bottleneck = _on_meta(ResNet50)
    assert bottleneck.layer1[0].conv2.stride == (1, 1)
    assert bottleneck.layer2[0].conv2.stride == (2, 2) and bottleneck.fc.in_features == 2048


def test_resnet_feature_map_sizes():
    model = _build(ResNetTiny).eval()
    sizes = {}
    for name in ("layer1", "layer2", "layer3", "layer4"):
        getattr(model, name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[1:]))
        )
    model(torch.randn(1, *CIFAR))
    assert sizes == {
        "layer1": (8, 32, 32),
        "layer2": (16, 16, 16),
        "layer3": (32, 8, 8),
        "layer4": (64, 4, 4),
    }


def test_basic_block_forward_is_the_residual_formula():
    block = _build(ResNetTiny).layer2[0].eval()
    x = torch.randn(2, 8, 16, 16)
    out = torch.relu(block.bn1(block.conv1(x)))
    expected = torch.relu(block.bn2(block.conv2(out)) + block.shortcut[1](block.shortcut[0](x)))
    torch.testing.assert_close(block(x), expected)


def test_vgg_layer_names_in_forward_order():
    model = _on_meta(VGG16)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs == [f"conv{i}" for i in range(1, 14)]
    assert [n for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)] == [
        f"pool{i}" for i in range(1, 6)
    ]
    assert model.fc.in_features == 512 and isinstance(model.bn13, nn.BatchNorm2d)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(BenchError, match="too small for its 5 2×2 max-pools") as info:
        _build(VGGTiny, (3, 16, 16))
    assert "\n" not in str(info.value)
    with pytest.raises(BenchError, match=r"needs image inputs \(C, H, W\)"):
        _build(ResNetTiny, (784,))
    with pytest.raises(BenchError, match="0 channels; use width >= 0.015625"):
        _build(ResNet18, width=0.01)
    with pytest.raises(ValidationError):
        VGG16.Options(head="conv")
    with pytest.raises(ValidationError):
        ResNet18.Options(width=0)


def test_build_is_seeded_by_the_global_rng():
    torch.manual_seed(5)
    a = _build(ResNetTiny).state_dict()
    torch.manual_seed(5)
    b = _build(ResNetTiny).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_registered_and_documented():
    registry = get_registry()
    for cls in CIFAR_MODELS:
        assert registry.get("model", cls.name).cls is cls
        assert cls.version == "1" and cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name} has no description"


def test_vgg_without_batch_norm():
    model = _on_meta(VGG16, batch_norm=False)
    assert _params(model) == _vgg_count(VGG16_CONVS, bn=False) == 14_728_266 - 2 * 4224
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    names = [n for n, _ in model.named_children()]
    assert names[:4] == ["conv1", "relu1", "conv2", "relu2"]
