"""Pruning compressors: ℓ0 top-κ, ℓ1-ball projection, structured row pruning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from benchharness import BenchError
from benchharness_plugins.compressors.pruning import Prune, PruneL1, PruneStructured


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.randn(30, 40, generator=g),
        "conv.weight": torch.randn(6, 3, 3, 3, generator=g) * 0.5,
        "fc2.weight": torch.randn(10, 30, generator=g) * 2,
    }


def prune(**options) -> Prune:
    return Prune(Prune.Options(**options))


def _kept(dense: dict[str, torch.Tensor]) -> int:
    return sum(int((d != 0).sum()) for d in dense.values())


# ------------------------------------------------------------------------------ ℓ0
@pytest.mark.parametrize("options, expected", [({"count": 123}, 123), ({"keep": 0.1}, 166)])
def test_global_keeps_exactly_kappa_largest(options, expected):
    w = _weights()
    assert sum(t.numel() for t in w.values()) == 1662  # keep 0.1 → round(166.2) = 166
    out = prune(**options).compress(w).decompress()
    assert _kept(out) == expected
    kept = torch.cat([w[n][out[n] != 0].abs() for n in w])
    dropped = torch.cat([w[n][out[n] == 0].abs() for n in w])
    assert kept.min() >= dropped.max()
    for n in w:  # kept values are unchanged
        mask = out[n] != 0
        assert torch.equal(out[n][mask], w[n][mask])


@pytest.mark.parametrize("options", [{"count": 7}, {"keep": 0.25}])
def test_per_layer_keeps_kappa_in_every_layer(options):
    w = _weights()
    out = prune(scope="layer", **options).compress(w).decompress()
    for n, t in w.items():
        expected = options.get("count") or math.floor(0.25 * t.numel() + 0.5)
        mask = out[n] != 0
        assert int(mask.sum()) == expected
        assert t[mask].abs().min() >= t[~mask].abs().max()


def test_ties_are_broken_deterministically_towards_earlier_weights():
    w = {"a.weight": torch.ones(3, 4), "b.weight": -torch.ones(2, 2)}
    out = prune(count=5).compress(w).decompress()
    assert _kept(out) == 5
    assert torch.equal(out["a.weight"].reshape(-1)[:5], torch.ones(5))
    assert int((out["b.weight"] != 0).sum()) == 0
    layer = prune(count=3, scope="layer").compress(w).decompress()
    assert layer["b.weight"].reshape(-1).tolist() == [-1.0, -1.0, -1.0, 0.0]


def test_prune_options_need_exactly_one_budget():
    with pytest.raises(ValidationError):
        Prune.Options()
    with pytest.raises(ValidationError):
        Prune.Options(keep=0.5, count=3)
    with pytest.raises(ValidationError):
        Prune.Options(keep=0.0)
    with pytest.raises(ValidationError):
        Prune.Options(keep=0.5, scope="row")


def test_count_larger_than_layer_is_an_error():
    with pytest.raises(BenchError, match="count"):
        prune(count=25, scope="layer").compress({"w": torch.randn(4, 5)})
    with pytest.raises(BenchError, match="count"):
        prune(count=21).compress({"w": torch.randn(4, 5)})


def test_prune_bits_and_macs_by_hand():
    # 4×5 linear, 3 kept: 3 × (32-bit value + ⌈log2 20⌉ = 5-bit index) = 111 bits
    w = {"fc.weight": torch.arange(1.0, 21.0).reshape(4, 5)}
    theta = prune(count=3).compress(w)
    assert theta.bits() == 111
    assert theta.realised
    assert theta.effective_macs("fc.weight", 20) == 3
    assert theta.effective_macs("other.weight", 77) == 77
    assert theta.decompress()["fc.weight"].reshape(-1).tolist()[-3:] == [18.0, 19.0, 20.0]
    # conv (2, 1, 3, 3): 18 weights, 16 output positions → 288 dense MACs; keep 9 of 18
    conv = {"conv.weight": torch.randn(2, 1, 3, 3)}
    theta = prune(keep=0.5, scope="layer").compress(conv)
    assert theta.bits() == 9 * (32 + 5)
    assert theta.effective_macs("conv.weight", 288) == 144


def test_prune_round_trip_and_dtypes():
    w = _weights(1)
    compressor = prune(keep=0.2)
    once = compressor.compress(w).decompress()
    twice = compressor.compress(once).decompress()
    for n in w:
        assert once[n].shape == w[n].shape and once[n].dtype == w[n].dtype
        assert torch.equal(once[n], twice[n])
    w64 = {"x": torch.randn(5, 6, dtype=torch.float64)}
    assert compressor.compress(w64).decompress()["x"].dtype == torch.float64


def test_select_by_layer_pattern_and_compress_parameters():
    model = nn.Sequential()
    model.add_module("fc1", nn.Linear(8, 6))
    model.add_module("act", nn.Tanh())
    model.add_module("fc2", nn.Linear(6, 3))
    compressor = Prune(Prune.Options(keep=0.5, layers=["fc2"]))
    chosen = compressor.select(model)
    assert list(chosen) == ["fc2.weight"]
    out = compressor.compress(chosen).decompress()
    assert int((out["fc2.weight"] != 0).sum()) == 9
    assert not out["fc2.weight"].requires_grad


# ------------------------------------------------------------------------------ ℓ1
def _l1_reference(v: np.ndarray, radius: float) -> np.ndarray:
    """Projection by bisection on the soft threshold θ: Σ max(|v| − θ, 0) = radius."""
    a = np.abs(v)
    if a.sum() <= radius:
        return v.copy()
    lo, hi = 0.0, a.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        if np.maximum(a - mid, 0).sum() > radius:
            lo = mid
        else:
            hi = mid
    return np.sign(v) * np.maximum(a - (lo + hi) / 2, 0)


@pytest.mark.parametrize("radius", [0.5, 10.0, 200.0])
def test_l1_projection_matches_bisection_reference(radius):
    w = _weights(2)
    out = PruneL1(PruneL1.Options(radius=radius)).compress(w).decompress()
    flat = np.concatenate([t.numpy().ravel().astype(np.float64) for t in w.values()])
    reference = _l1_reference(flat, radius)
    got = np.concatenate([out[n].numpy().ravel() for n in w]).astype(np.float64)
    np.testing.assert_allclose(got, reference, atol=1e-5)
    assert abs(np.abs(got).sum() - radius) <= 1e-5 * radius + 1e-5
    assert (got == 0).sum() == (reference == 0).sum()


def test_l1_inside_ball_is_unchanged_and_bits_count_nonzeros():
    w = {"fc.weight": torch.tensor([[0.5, 0.0, -0.25, 0.0, 0.125]] * 4)}  # ‖w‖1 = 3.5
    theta = PruneL1(PruneL1.Options(radius=10.0)).compress(w)
    assert torch.equal(theta.decompress()["fc.weight"], w["fc.weight"])
    assert theta.bits() == 12 * (32 + 5)
    assert theta.effective_macs("fc.weight", 20) == 12
    # radius 2: θ = (3.5 − 2)/12 ... all 12 nonzeros stay above it
    out = PruneL1(PruneL1.Options(radius=2.0)).compress(w).decompress()["fc.weight"]
    assert out.abs().sum().item() == pytest.approx(2.0, rel=1e-6)


def test_l1_round_trip():
    compressor = PruneL1(PruneL1.Options(radius=5.0))
    once = compressor.compress(_weights(3)).decompress()
    twice = compressor.compress(once).decompress()
    for n in once:
        torch.testing.assert_close(twice[n], once[n], atol=1e-6, rtol=0)


# ---------------------------------------------------------------------- structured
def test_structured_keeps_rows_with_largest_norm():
    w = _weights(4)
    theta = PruneStructured(PruneStructured.Options(keep=0.3)).compress(w)
    out = theta.decompress()
    for n, t in w.items():
        rows = t.reshape(t.shape[0], -1)
        kept = out[n].reshape(t.shape[0], -1).abs().sum(1) != 0
        assert int(kept.sum()) == max(1, math.floor(0.3 * t.shape[0] + 0.5))
        norms = rows.norm(dim=1)
        assert norms[kept].min() >= norms[~kept].max()
        assert torch.equal(out[n].reshape(t.shape[0], -1)[kept], rows[kept])
        assert out[n].shape == t.shape and out[n].dtype == t.dtype


def test_structured_bits_and_macs_by_hand():
    # 4×5 linear, keep half the rows: 2 rows × 5 values × 32 bits + 4-bit row mask
    w = {"fc.weight": torch.arange(20.0).reshape(4, 5)}
    theta = PruneStructured(PruneStructured.Options(keep=0.5)).compress(w)
    assert theta.bits() == 2 * 5 * 32 + 4
    assert theta.effective_macs("fc.weight", 20) == 10
    assert theta.decompress()["fc.weight"][:2].abs().sum() == 0  # the two smallest rows
    # conv (4, 2, 3, 3), 25 positions → 1800 dense MACs; keep 1 of 4 filters
    conv = {"c.weight": torch.randn(4, 2, 3, 3)}
    theta = PruneStructured(PruneStructured.Options(keep=0.25)).compress(conv)
    assert theta.bits() == 18 * 32 + 4
    assert theta.effective_macs("c.weight", 1800) == 450
    again = PruneStructured(PruneStructured.Options(keep=0.25)).compress(theta.decompress())
    assert torch.equal(again.decompress()["c.weight"], theta.decompress()["c.weight"])
