"""Measurements against hand counts and independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from benchharness import metrics
from benchharness.api import Compressed


class Tiny(nn.Module):
    """conv(1→2, 3×3, pad 1) on 4×4 → ReLU → flatten → linear(32→3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.act(self.conv(x)).flatten(1))


def test_flops_match_a_hand_count():
    model = Tiny()
    total, per_module = metrics.layer_flops(model, (1, 4, 4), torch.device("cpu"))
    conv_macs = (2 * 4 * 4) * (1 * 3 * 3)  # output elements × (in channels × kernel)
    fc_macs = 32 * 3
    assert per_module["conv"] == 2 * conv_macs
    assert per_module["fc"] == 2 * fc_macs
    assert total == 2 * (conv_macs + fc_macs)


def test_count_params_is_the_hand_count():
    assert metrics.count_params(Tiny()) == (2 * 9 + 2) + (32 * 3 + 3)


class _HalfFc(Compressed):
    """A fake compressed fc weight: 100 bits, half the MACs."""

    realised = True

    def __init__(self, weight: Tensor):
        self.weight = weight

    def decompress(self) -> dict[str, Tensor]:
        return {"fc.weight": self.weight}

    def bits(self) -> int:
        return 100

    def effective_macs(self, name: str, dense_macs: int) -> int:
        return dense_macs // 2


def test_size_bits_counts_compressed_parts_and_keeps_the_rest_32_bit():
    model = Tiny()
    dense, bits = metrics.size_bits(model, [_HalfFc(model.fc.weight.detach())])
    total = metrics.count_params(model)
    assert dense == 32 * total
    assert bits == 100 + 32 * (total - 96)
    assert metrics.size_bits(model, []) == (dense, dense)


def test_effective_flops_uses_the_compressed_layer_cost():
    model = Tiny()
    total, per_module = metrics.layer_flops(model, (1, 4, 4), torch.device("cpu"))
    effective = metrics.effective_flops(total, per_module, [_HalfFc(model.fc.weight.detach())])
    assert effective == total - per_module["fc"] // 2


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 30):
        samples = list(rng.random(n))
        assert metrics._percentile(samples, 0.9) == pytest.approx(np.percentile(samples, 90))


def test_latency_is_positive_and_ordered():
    median, p90 = metrics.latency_ms(Tiny(), (1, 4, 4), 8, torch.device("cpu"), repeats=7, warmup=1)
    assert 0 < median <= p90


def test_evaluate_matches_a_direct_computation():
    torch.manual_seed(0)
    model = Tiny()
    x, y = torch.randn(50, 1, 4, 4), torch.randint(0, 3, (50,))
    result = metrics.evaluate(model, x, y, batch_size=16)
    with torch.no_grad():
        logits = model(x)
    assert result.loss == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-5)
    assert result.accuracy == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    assert model.training


def test_activation_stats_cover_every_leaf_module():
    torch.manual_seed(0)
    model = Tiny()
    x = torch.randn(10, 1, 4, 4)
    stats = metrics.activation_stats(model, x)
    with torch.no_grad():
        relu_out = torch.relu(model.conv(x))
    assert set(stats) == {f"act.{m}.{s}" for m in ("conv", "act", "fc") for s in ("mean", "std")}
    assert stats["act.act.mean"] == pytest.approx(float(relu_out.mean()))
    assert stats["act.act.std"] == pytest.approx(float(relu_out.std()))
