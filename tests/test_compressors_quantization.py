"""Quantisers: adaptive codebooks (k-means, exact 1-D optimum) and fixed binary/ternary."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from benchharness_plugins.compressors.quantization import (
    Binarize,
    BinarizeScaled,
    Quantize,
    TernarizeScaled,
    kmeans_1d,
    optimal_kmeans_1d,
)


def quantize(**options) -> Quantize:
    return Quantize(Quantize.Options(**options))


def _sse(x: np.ndarray, codebook: np.ndarray, codes: np.ndarray) -> float:
    return float(((x - codebook[codes]) ** 2).sum())


def _brute_force_sse(x: np.ndarray, k: int) -> float:
    """Minimum SSE over every assignment of the points to k labels (each label's best
    value is its mean); no assumption that clusters are contiguous."""
    labels = np.array(list(itertools.product(range(k), repeat=x.size)))  # (k^n, n)
    best = np.inf
    total = np.zeros(labels.shape[0])
    for label in range(k):
        member = labels == label
        count = member.sum(1)
        s1 = (member * x).sum(1)
        s2 = (member * x * x).sum(1)
        total += s2 - np.divide(s1 * s1, count, out=np.zeros_like(s1), where=count > 0)
    best = total.min()
    return float(best)


def _naive_dp_sse(x: np.ndarray, k: int) -> float:
    """O(k·n²) dynamic programme over the sorted values (a second reference)."""
    xs = np.sort(x)
    n = xs.size
    p1 = np.concatenate(([0.0], np.cumsum(xs)))
    p2 = np.concatenate(([0.0], np.cumsum(xs * xs)))

    def cost(j, i):  # xs[j..i]
        s = p1[i + 1] - p1[j]
        return p2[i + 1] - p2[j] - s * s / (i - j + 1)

    d = np.array([cost(0, i) for i in range(n)])
    for _ in range(2, k + 1):
        d = np.array(
            [min([d[i]] + [d[j - 1] + cost(j, i) for j in range(1, i + 1)]) for i in range(n)]
        )
    return float(d[-1])


# ------------------------------------------------------------------- 1-D solvers
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("n", [3, 5, 8, 9])
def test_optimal_matches_brute_force_over_all_partitions(n, k):
    rng = np.random.default_rng(100 * n + k)
    for trial in range(4):
        x = rng.normal(size=n) if trial % 2 else rng.exponential(size=n) ** 2
        codebook, codes = optimal_kmeans_1d(x, k)
        assert codebook.size <= k
        assert _sse(x, codebook, codes) == pytest.approx(_brute_force_sse(x, k), abs=1e-10)


def test_optimal_matches_naive_dp_on_larger_vectors_with_duplicates():
    rng = np.random.default_rng(7)
    for trial in range(3):
        x = np.round(rng.standard_t(3, size=150), 1 if trial else 2)
        for k in (2, 3, 5, 8):
            codebook, codes = optimal_kmeans_1d(x, k)
            assert np.all(np.diff(codebook) > 0)
            assert _sse(x, codebook, codes) == pytest.approx(
                _naive_dp_sse(x, k), rel=1e-9, abs=1e-9
            )


def test_kmeans_is_a_lloyd_fixed_point_and_never_beats_the_optimum():
    rng = np.random.default_rng(3)
    for k in (2, 3, 4, 7):
        x = np.concatenate([rng.normal(size=200), np.zeros(300), rng.normal(5, 0.1, size=20)])
        codebook, codes = kmeans_1d(x, k)
        assert 1 <= codebook.size <= k
        distance = np.abs(x[:, None] - codebook[None, :])
        assert np.all(distance[np.arange(x.size), codes] <= distance.min(1) + 1e-12)
        for c in range(codebook.size):  # every entry used, and it is its cluster's mean
            assert np.any(codes == c)
            assert codebook[c] == pytest.approx(x[codes == c].mean(), abs=1e-12)
        best = optimal_kmeans_1d(x, k)
        assert _sse(x, codebook, codes) >= _sse(x, *best) - 1e-9


def test_few_distinct_values_are_kept_exactly():
    x = np.array([0.0, 1.0, 0.0, -2.0, 1.0])
    for solver in (lambda v: kmeans_1d(v, 4), lambda v: optimal_kmeans_1d(v, 4)):
        codebook, codes = solver(x)
        assert codebook.tolist() == [-2.0, 0.0, 1.0]
        assert np.array_equal(codebook[codes], x)


def _quantile_lloyd_sse(x: np.ndarray, k: int, max_iter: int = 300) -> float:
    """The error of version 1's k-means, written independently: centroids at the quantiles
    (i + ½)/k of the distinct values, then plain Lloyd (nearest centroid by brute force,
    an empty cluster keeps its centroid) until the assignment stops changing."""
    distinct = np.unique(x)
    centroids = distinct[np.floor((np.arange(k) + 0.5) * distinct.size / k).astype(np.int64)]
    codes = None
    for _ in range(max_iter):
        new = np.abs(x[:, None] - centroids[None, :]).argmin(1)
        if codes is not None and np.array_equal(new, codes):
            break
        codes = new
        counts = np.bincount(codes, minlength=k)
        sums = np.bincount(codes, weights=x, minlength=k)
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    distance = np.abs(x[:, None] - centroids[None, :])
    return float((distance.min(1) ** 2).sum())


def _clusters(rng: np.random.Generator, n: int, spread: float = 0.002) -> np.ndarray:
    """Weights late in LC: tight clusters around four levels of very unequal sizes."""
    sizes = (np.array([0.6, 0.3, 0.08, 0.02]) * n).astype(int)
    levels = [0.0, 0.05, -0.1, 0.3]
    return np.concatenate([rng.normal(m, spread, s) for m, s in zip(levels, sizes, strict=True)])


def _weight_vectors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(21)
    n = 20_000
    mixture = np.concatenate(
        [
            rng.normal(-0.05, 0.01, n // 4),
            rng.normal(0, 0.03, n // 2),
            rng.normal(0.08, 0.02, n // 4),
        ]
    )
    return {
        "mixture": mixture.astype(np.float32).astype(np.float64),
        "laplace": rng.laplace(0, 0.03, 10_000).astype(np.float32).astype(np.float64),
        "uniform_init": rng.uniform(-0.05, 0.05, 30_000),
        "lc_clusters": _clusters(rng, 30_000),
    }


@pytest.mark.parametrize("k", [2, 4, 8])
def test_kmeans_never_worse_than_the_quantile_start_and_close_to_the_optimum(k):
    for label, x in _weight_vectors().items():
        codebook, codes = kmeans_1d(x, k)
        error = _sse(x, codebook, codes)
        optimum = _sse(x, *optimal_kmeans_1d(x, k))
        assert error <= _quantile_lloyd_sse(x, k) * (1 + 1e-9), label
        assert optimum * (1 - 1e-9) <= error <= 1.01 * optimum, label


def test_kmeans_finds_separated_clusters_that_the_quantile_start_misses():
    x = _clusters(np.random.default_rng(4), 30_000)
    optimum = _sse(x, *optimal_kmeans_1d(x, 4))
    assert _quantile_lloyd_sse(x, 4) > 10 * optimum  # version 1 merged the small clusters
    assert _sse(x, *kmeans_1d(x, 4)) == pytest.approx(optimum, rel=1e-9)
    assert _sse(x, *kmeans_1d(x, 4, restarts=0)) == pytest.approx(_quantile_lloyd_sse(x, 4))


def test_kmeans_with_many_entries_beats_the_quantile_start():
    x = np.random.default_rng(8).laplace(0, 0.03, 20_000)
    error = _sse(x, *kmeans_1d(x, 64))
    assert error <= _quantile_lloyd_sse(x, 64) * (1 + 1e-9)
    assert np.unique(kmeans_1d(x, 64)[1]).size == 64


def test_kmeans_is_deterministic_and_seeded():
    x = _weight_vectors()["mixture"]
    a, b = kmeans_1d(x, 8), kmeans_1d(x.copy(), 8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    w = {"fc.weight": torch.tensor(x.reshape(100, 200), dtype=torch.float32)}
    first, second = quantize(k=8).compress(w), quantize(k=8).compress(w)
    assert torch.equal(first.layers["fc.weight"].codebook, second.layers["fc.weight"].codebook)
    assert torch.equal(first.layers["fc.weight"].codes, second.layers["fc.weight"].codes)
    with pytest.raises(ValidationError):
        Quantize.Options(k=4, restarts=-1)


def test_kmeans_from_a_short_init_tops_it_up_to_k_entries():
    x = _weight_vectors()["laplace"]
    codebook, codes = kmeans_1d(x, 8, restarts=0, init=np.array([-0.01, 0.01]))
    assert codebook.size == 8 and np.unique(codes).size == 8


def test_warm_start_is_never_worse_than_cold_and_kept_per_weight_name():
    rng = np.random.default_rng(5)
    compressor = quantize(k=4)
    assert compressor.with_mu(1e-3) is compressor  # LC's C steps share the memory
    x = _clusters(rng, 20_000, spread=0.01)
    y = rng.normal(size=5_000)
    w = {"a": torch.tensor(x), "b": torch.tensor(y)}
    compressor.compress(w)
    assert set(compressor.codebooks) == {"a", "b"}
    for _ in range(3):  # the next C steps: the weights moved a little
        x = x + rng.normal(0, 0.003, x.size)
        moved = {"a": torch.tensor(x), "c": torch.tensor(y)}
        warm = compressor.compress(moved).decompress()
        cold = quantize(k=4).compress(moved).decompress()
        assert float(((warm["a"] - moved["a"]) ** 2).sum()) <= float(
            ((cold["a"] - moved["a"]) ** 2).sum()
        ) * (1 + 1e-12)
        assert torch.equal(warm["c"], cold["c"])  # a new name has nothing to start from
    assert set(compressor.codebooks) == {"a", "b", "c"}
    # the previous codebook is used: a quantile-only quantiser that remembers a good
    # codebook finds the small clusters that its cold start misses
    x = _clusters(rng, 20_000)
    good = kmeans_1d(x, 4)[0]
    cold_only = quantize(k=4, restarts=0)
    warmed = quantize(k=4, restarts=0)
    warmed.codebooks["a"] = good
    one = {"a": torch.tensor(x)}
    cold_error = float(((cold_only.compress(one).decompress()["a"] - one["a"]) ** 2).sum())
    warm_error = float(((warmed.compress(one).decompress()["a"] - one["a"]) ** 2).sum())
    assert warm_error < 0.5 * cold_error
    assert quantize(k=4, restarts=0, warm_start=False).compress(one).bits() > 0


# ---------------------------------------------------------------------- quantize
@pytest.mark.parametrize("method", ["kmeans", "optimal"])
def test_quantize_layers_shapes_dtypes_and_nearest_codes(method):
    g = torch.Generator().manual_seed(0)
    w = {
        "fc.weight": torch.randn(20, 30, generator=g),
        "conv.weight": torch.randn(4, 2, 3, 3, generator=g),
    }
    theta = quantize(k=4, method=method).compress(w)
    out = theta.decompress()
    for n, t in w.items():
        assert out[n].shape == t.shape and out[n].dtype == t.dtype
        layer = theta.layers[n]
        assert layer.codebook.numel() == 4
        assert set(out[n].unique().tolist()) == set(layer.codebook.tolist())
        distance = (t.reshape(-1, 1) - layer.codebook.reshape(1, -1)).abs()
        assert torch.all(
            distance.gather(1, layer.codes.view(-1, 1)).squeeze(1) <= distance.min(1).values + 1e-6
        )


def test_quantize_bits_by_hand():
    w = {"fc.weight": torch.randn(4, 5, generator=torch.Generator().manual_seed(1))}
    assert quantize(k=2).compress(w).bits() == 20 * 1 + 2 * 32  # 84
    assert quantize(k=3, method="optimal").compress(w).bits() == 20 * 2 + 3 * 32
    assert quantize(k=4).compress(w).bits() == 20 * 2 + 4 * 32
    assert quantize(k=5).compress(w).bits() == 20 * 3 + 5 * 32
    theta = quantize(k=2).compress(w)
    assert theta.realised and theta.effective_macs("fc.weight", 20) == 20
    # a layer with only two distinct values and K = 4 stores just those two
    two = {"w": torch.tensor([[1.0, -1.0], [1.0, 1.0]])}
    assert quantize(k=4).compress(two).bits() == 4 * 1 + 2 * 32


@pytest.mark.parametrize("method", ["kmeans", "optimal"])
def test_quantize_round_trip(method):
    w = {"fc.weight": torch.randn(30, 20, generator=torch.Generator().manual_seed(2))}
    compressor = quantize(k=3, method=method)
    first = compressor.compress(w)
    second = compressor.compress(first.decompress())
    assert torch.equal(second.layers["fc.weight"].codebook, first.layers["fc.weight"].codebook)
    assert torch.equal(second.decompress()["fc.weight"], first.decompress()["fc.weight"])


def test_quantize_options_are_constrained():
    with pytest.raises(ValidationError):
        Quantize.Options(k=1)
    with pytest.raises(ValidationError):
        Quantize.Options(k=4, method="lloyd")
    with pytest.raises(ValidationError):
        Quantize.Options()


# ------------------------------------------------------------- fixed codebooks
def test_binarize_is_sign_with_one_bit_per_weight():
    w = {"fc.weight": torch.tensor([[0.3, -2.0, 0.0, 1e-9, -1e-9]] * 4)}
    theta = Binarize().compress(w)
    assert theta.decompress()["fc.weight"][0].tolist() == [1.0, -1.0, 1.0, 1.0, -1.0]
    assert theta.bits() == 20
    again = Binarize().compress(theta.decompress())
    assert torch.equal(again.decompress()["fc.weight"], theta.decompress()["fc.weight"])


def test_binarize_scaled_scale_beats_a_grid_search():
    rng = np.random.default_rng(5)
    x = rng.normal(size=12)
    w = {"w": torch.tensor(x.reshape(3, 4))}
    theta = BinarizeScaled().compress(w)
    got = float(((theta.decompress()["w"].numpy().ravel() - x) ** 2).sum())
    grid = np.linspace(0, 3, 30001)
    grid_errors = ((np.sign(x)[None, :] * grid[:, None] - x[None, :]) ** 2).sum(1)
    assert got <= grid_errors.min() + 1e-12
    assert theta.layers["w"].codebook[1].item() == pytest.approx(np.abs(x).mean())
    assert theta.bits() == 12 + 32


def _ternary_brute_force(x: np.ndarray) -> float:
    """Min over all t ∈ {−1, 0, 1}^n and a of ‖x − a·t‖² (best a = t·x / t·t)."""
    t = np.array(list(itertools.product((-1, 0, 1), repeat=x.size)), dtype=np.float64)
    tt = (t * t).sum(1)
    tx = t @ x
    reduction = np.divide(tx * tx, tt, out=np.zeros_like(tx), where=tt > 0)
    return float((x * x).sum() - reduction.max())


def test_ternarize_scaled_is_optimal_against_brute_force():
    rng = np.random.default_rng(11)
    for trial in range(6):
        x = rng.normal(size=8) * (1 + trial) + (0.5 if trial % 2 else 0.0)
        w = {"w": torch.tensor(x.reshape(2, 4))}
        theta = TernarizeScaled().compress(w)
        out = theta.decompress()["w"].numpy().ravel()
        assert float(((out - x) ** 2).sum()) == pytest.approx(_ternary_brute_force(x), abs=1e-10)
        a = theta.layers["w"].codebook[2].item()
        assert set(np.unique(np.abs(out)).tolist()) <= {0.0, a}


def test_ternarize_bits_and_round_trip():
    w = {"fc.weight": torch.randn(4, 5, generator=torch.Generator().manual_seed(9))}
    theta = TernarizeScaled().compress(w)
    assert theta.bits() == 20 * 2 + 32
    again = TernarizeScaled().compress(theta.decompress())
    assert torch.equal(again.decompress()["fc.weight"], theta.decompress()["fc.weight"])
    scaled = BinarizeScaled().compress(w)
    assert torch.equal(
        BinarizeScaled().compress(scaled.decompress()).decompress()["fc.weight"],
        scaled.decompress()["fc.weight"],
    )
