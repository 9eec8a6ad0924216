"""Low-rank compressors: truncated SVD at a fixed rank, and per-layer rank selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from benchharness import BenchError
from benchharness_plugins.compressors.lowrank import LowRank, LowRankSelect


def lowrank(rank: int) -> LowRank:
    return LowRank(LowRank.Options(rank=rank))


def select(**options) -> LowRankSelect:
    return LowRankSelect(LowRankSelect.Options(**options))


def _matrix(m: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # distinct, decaying singular values
    u, _ = np.linalg.qr(rng.normal(size=(m, m)))
    v, _ = np.linalg.qr(rng.normal(size=(n, n)))
    s = 3.0 * 0.7 ** np.arange(min(m, n))
    return (u[:, : s.size] * s) @ v[:, : s.size].T


@pytest.mark.parametrize("rank", [1, 2, 4])
def test_fixed_rank_matches_numpy_svd_and_eckart_young(rank):
    w = _matrix(12, 9, rank)
    theta = lowrank(rank).compress({"fc.weight": torch.tensor(w, dtype=torch.float32)})
    out = theta.decompress()["fc.weight"].double().numpy()
    u, s, vt = np.linalg.svd(w.astype(np.float32).astype(np.float64))
    reference = (u[:, :rank] * s[:rank]) @ vt[:rank]
    np.testing.assert_allclose(out, reference, atol=1e-5)
    error = ((out - w) ** 2).sum()
    assert error == pytest.approx((s[rank:] ** 2).sum(), rel=1e-4, abs=1e-8)
    assert np.linalg.matrix_rank(out, tol=1e-4) == rank
    assert theta.ranks() == {"fc.weight": rank}


def test_conv_is_lowered_to_out_by_in_kh_kw():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 3, 3, 3, generator=g)
    theta = lowrank(2).compress({"conv.weight": w})
    out = theta.decompress()["conv.weight"]
    assert out.shape == w.shape and out.dtype == w.dtype
    u, s, vt = np.linalg.svd(w.reshape(8, 27).double().numpy())
    np.testing.assert_allclose(
        out.reshape(8, 27).double().numpy(), (u[:, :2] * s[:2]) @ vt[:2], atol=1e-5
    )
    # 8 × 27 lowered, 10 output positions → 2160 dense MACs; rank 2: 2·(8 + 27)·10 = 700
    assert theta.effective_macs("conv.weight", 2160) == 700
    assert theta.bits() == 32 * 2 * (8 + 27)


def test_bits_and_macs_by_hand():
    w = {"fc.weight": torch.randn(4, 5, generator=torch.Generator().manual_seed(1))}
    theta = lowrank(1).compress(w)
    assert theta.bits() == 32 * (4 + 5)
    assert theta.effective_macs("fc.weight", 20) == 9
    assert theta.effective_macs("unrelated.weight", 99) == 99
    assert theta.realised
    capped = lowrank(10).compress(w)  # rank capped at min(4, 5)
    assert capped.ranks() == {"fc.weight": 4}
    assert capped.bits() == 32 * 4 * 9
    torch.testing.assert_close(capped.decompress()["fc.weight"], w["fc.weight"], atol=1e-5, rtol=0)


def test_round_trip_returns_the_same_weights():
    w = {"a.weight": torch.tensor(_matrix(10, 7, 3), dtype=torch.float32)}
    once = lowrank(3).compress(w).decompress()
    twice = lowrank(3).compress(once).decompress()
    torch.testing.assert_close(twice["a.weight"], once["a.weight"], atol=1e-5, rtol=0)
    assert twice["a.weight"].dtype == torch.float32


# --------------------------------------------------------------- rank selection
def _brute_force_rank(w: np.ndarray, alpha: float, mu: float, per_rank_cost: float) -> int:
    """argmin over r of α·cost(r) + μ/2·‖W − W_r‖², each W_r rebuilt by numpy."""
    u, s, vt = np.linalg.svd(w)
    objective = []
    for r in range(s.size + 1):
        approx = (u[:, :r] * s[:r]) @ vt[:r]
        objective.append(alpha * per_rank_cost * r + mu / 2 * ((w - approx) ** 2).sum())
    return int(np.argmin(objective))


@pytest.mark.parametrize("alpha", [0.0, 1e-4, 1e-3, 1e-2, 0.05, 10.0])
def test_rank_selection_matches_brute_force(alpha):
    w = _matrix(12, 9, 5)
    mu = 0.7
    chosen = (
        select(alpha=alpha, mu=mu).compress({"fc.weight": torch.tensor(w)}).ranks()["fc.weight"]
    )
    assert chosen == _brute_force_rank(w, alpha, mu, per_rank_cost=12 + 9)


def test_rank_selection_with_flops_cost_uses_layer_macs():
    w = _matrix(8, 6, 2)
    weights = {"conv.weight": torch.tensor(w.reshape(8, 6, 1, 1))}
    macs = 8 * 6 * 20  # 20 output positions
    flops = select(alpha=2e-3, mu=1.0, cost="flops")
    flops.layer_macs = {"conv.weight": macs}  # what the harness sets from the model
    storage = select(alpha=2e-3, mu=1.0)
    assert flops.compress(weights).ranks()["conv.weight"] == _brute_force_rank(
        w, 2e-3, 1.0, 14 * 20
    )
    assert storage.compress(weights).ranks()["conv.weight"] == _brute_force_rank(w, 2e-3, 1.0, 14)
    assert (
        flops.compress(weights).ranks()["conv.weight"]
        < storage.compress(weights).ranks()["conv.weight"]
    )


def test_rank_zero_zeroes_the_layer_and_stores_nothing():
    w = {"fc.weight": torch.randn(4, 5)}
    theta = select(alpha=1e6).compress(w)
    assert theta.ranks() == {"fc.weight": 0}
    assert theta.bits() == 0
    assert theta.effective_macs("fc.weight", 20) == 0
    assert torch.equal(theta.decompress()["fc.weight"], torch.zeros(4, 5))


def test_with_mu_is_the_lc_hook():
    base = select(alpha=1e-3, mu=1e-4, layers=["fc*"])
    bigger = base.with_mu(10.0)
    assert isinstance(bigger, LowRankSelect)
    assert bigger.options.mu == 10.0 and base.options.mu == 1e-4
    assert bigger.options.alpha == 1e-3 and bigger.options.layers == ["fc*"]
    w = {"fc.weight": torch.tensor(_matrix(12, 9, 1), dtype=torch.float32)}
    assert bigger.compress(w).ranks()["fc.weight"] > base.compress(w).ranks()["fc.weight"]
    with pytest.raises(ValidationError):
        base.with_mu(0.0)
    with pytest.raises(ValidationError):
        LowRankSelect.Options(alpha=-1.0)
    with pytest.raises(ValidationError):
        LowRank.Options(rank=0)


def test_rank_selection_with_flops_cost_without_macs_is_a_one_line_error():
    weights = {"conv.weight": torch.tensor(_matrix(8, 6, 2).reshape(8, 6, 1, 1))}
    with pytest.raises(BenchError, match="needs the MACs of conv.weight"):
        select(alpha=2e-3, mu=1.0, cost="flops").compress(weights)


def test_rank_selection_takes_conv_macs_from_the_model(tmp_path):
    """The harness gives lowrank_select the MACs of a conv layer counted on the model:
    a 3×3 conv on 8×8 inputs with padding 1 has 64 output positions."""
    from benchharness import metrics
    from benchharness.compressing import weight_macs

    model = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 64, 3)
    )
    _total, per_module = metrics.layer_flops(model, (2, 8, 8), torch.device("cpu"))
    assert weight_macs(model, per_module) == {"0.weight": 4 * 2 * 9 * 64, "2.weight": 256 * 3}
