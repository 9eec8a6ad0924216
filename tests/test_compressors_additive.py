"""The additive compressor: sums of built-in compressors fitted by alternation."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

import benchharness_plugins.compressors as builtin_compressors
from benchharness_plugins.compressors.additive import Additive
from benchharness_plugins.compressors.lowrank import LowRankSelect
from benchharness_plugins.compressors.quantization import Quantize


def additive(parts, **options) -> Additive:
    return Additive(Additive.Options(parts=parts, **options))


def _weights(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "fc1.weight": torch.randn(40, 50, generator=g) * 0.1,
        "conv.weight": torch.randn(8, 3, 3, 3, generator=g),
    }


def _error(w: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> float:
    return sum(float(((w[n] - out[n]) ** 2).sum()) for n in w)


def test_quantize_plus_prune_beats_quantize_alone_and_bits_add_up():
    w = _weights()
    q_alone = Quantize(Quantize.Options(k=2)).compress(w)
    theta = additive([{"name": "quantize", "k": 2}, {"name": "prune", "keep": 0.01}]).compress(w)
    out = theta.decompress()
    assert _error(w, out) < 0.9 * _error(w, q_alone.decompress())
    # per layer: 1 bit per weight + 2 codebook floats; globally 22 kept weights
    # (round(0.01 × 2216)), each 32 bits + ⌈log2 numel⌉ index bits (11 for 2000, 8 for 216)
    quantize_bits = 2000 + 64 + 216 + 64
    sparse = theta.parts[1].decompress()
    kept = {n: int((sparse[n] != 0).sum()) for n in w}
    assert sum(kept.values()) == 22
    prune_bits = kept["fc1.weight"] * (32 + 11) + kept["conv.weight"] * (32 + 8)
    assert theta.bits() == quantize_bits + prune_bits == sum(p.bits() for p in theta.parts)
    assert theta.realised
    for n in w:
        assert out[n].shape == w[n].shape and out[n].dtype == w[n].dtype
        torch.testing.assert_close(out[n], theta.parts[0].decompress()[n] + sparse[n])


def test_more_sweeps_never_hurt():
    w = _weights(1)
    parts = [{"name": "quantize", "k": 2}, {"name": "prune", "keep": 0.05}]
    errors = [_error(w, additive(parts, iterations=i).compress(w).decompress()) for i in (1, 3, 10)]
    assert errors[0] >= errors[1] >= errors[2]


def _outlier_weights(seed: int) -> dict[str, torch.Tensor]:
    """Dense small weights plus 2 % large ones: what quantisation + a sparse part fits."""
    g = torch.Generator().manual_seed(seed)
    outliers = (torch.rand(100, 100, generator=g) < 0.02) * torch.randn(100, 100, generator=g)
    return {
        "fc1.weight": torch.randn(100, 100, generator=g) * 0.1 + outliers,
        "fc2.weight": torch.randn(20, 100, generator=g) * 0.05,
    }


@pytest.mark.parametrize(
    ("parts", "tolerance"),
    [
        ([{"name": "quantize", "k": 2}, {"name": "prune", "keep": 0.02}], 0.01),
        ([{"name": "quantize", "k": 4}, {"name": "prune", "keep": 0.05}], 0.01),
        ([{"name": "lowrank", "rank": 3}, {"name": "prune", "keep": 0.05}], 0.06),
    ],
)
def test_default_sweeps_are_close_to_a_long_run(parts, tolerance):
    for seed in (0, 1):
        w = _outlier_weights(seed)
        default = _error(w, additive(parts).compress(w).decompress())
        long_run = _error(w, additive(parts, iterations=200).compress(w).decompress())
        assert long_run <= default <= (1 + tolerance) * long_run


def test_warm_start_across_c_steps_is_never_worse_than_a_fresh_compressor():
    parts = [{"name": "quantize", "k": 2}, {"name": "prune", "keep": 0.02}]
    compressor = additive(parts)
    w = _outlier_weights(2)
    g = torch.Generator().manual_seed(3)
    for step in range(4):  # LC: a with_mu copy per C step, the weights drifting
        mu = 1e-3 * 1.5**step
        out = compressor.with_mu(mu).compress(w).decompress()
        assert compressor._warm.dense, "with_mu copies share the warm-start memory"
        fresh = additive(parts).with_mu(mu).compress(w).decompress()
        assert _error(w, out) <= _error(w, fresh) * (1 + 1e-12)
        w = {n: t + 0.01 * torch.randn(t.shape, generator=g) for n, t in w.items()}
    # other weights (names or shapes): a cold start, as a fresh compressor's
    other = _weights(4)
    assert _error(other, compressor.compress(other).decompress()) == _error(
        other, additive(parts).compress(other).decompress()
    )


def test_warm_start_continues_a_slow_alternation():
    """Low rank + sparse converges slowly: calling again on the same weights goes on
    from the previous parts, like a longer run, and strictly improves."""
    parts = [{"name": "lowrank", "rank": 3}, {"name": "prune", "keep": 0.05}]
    w = _outlier_weights(0)
    compressor = additive(parts)
    errors = [_error(w, compressor.compress(w).decompress()) for _ in range(3)]
    assert errors[0] > errors[1] > errors[2]
    longer = [_error(w, additive(parts, iterations=i).compress(w).decompress()) for i in (20, 30)]
    assert errors[1:] == pytest.approx(longer, rel=1e-12)  # 3 calls of 10 sweeps = 30 sweeps
    cold = additive(parts, warm_start=False)
    again = [_error(w, cold.compress(w).decompress()) for _ in range(2)]
    assert again == [errors[0], errors[0]]


def test_fresh_compressors_are_deterministic():
    parts = [{"name": "quantize", "k": 4}, {"name": "prune", "keep": 0.02}]
    w = _outlier_weights(5)
    first = additive(parts).compress(w).decompress()
    second = additive(parts).compress(w).decompress()
    assert all(torch.equal(first[n], second[n]) for n in w)


def test_lowrank_plus_sparse_and_effective_macs():
    w = {"fc.weight": torch.randn(20, 30, generator=torch.Generator().manual_seed(2))}
    theta = additive([{"name": "lowrank", "rank": 2}, {"name": "prune", "count": 6}]).compress(w)
    # runs as two factors (2·(20+30) MACs) plus 6 sparse MACs
    assert theta.effective_macs("fc.weight", 600) == 2 * 50 + 6
    dense_parts = additive([{"name": "quantize", "k": 2}, {"name": "prune", "count": 6}]).compress(
        w
    )
    assert dense_parts.effective_macs("fc.weight", 600) == 600  # never above dense
    assert theta.bits() == 32 * 2 * 50 + 6 * (32 + 10)


def test_round_trip_of_an_exact_sum():
    w = _weights(3)
    compressor = additive([{"name": "binarize_scaled"}, {"name": "prune", "keep": 0.02}])
    once = compressor.compress(w).decompress()
    twice = compressor.compress(once).decompress()
    assert _error(once, twice) <= 1e-10 * _error(w, {n: torch.zeros_like(t) for n, t in w.items()})


def test_parts_are_validated_with_each_compressor_options():
    with pytest.raises(ValidationError, match="unknown compressor 'huffman'"):
        Additive.Options(parts=[{"name": "huffman"}, {"name": "prune", "keep": 0.1}])
    with pytest.raises(ValidationError, match=r"parts\[1\] \(prune\)"):
        Additive.Options(parts=[{"name": "quantize", "k": 2}, {"name": "prune"}])
    with pytest.raises(ValidationError, match="k"):
        Additive.Options(parts=[{"name": "quantize", "k": 1}, {"name": "prune", "keep": 0.1}])
    with pytest.raises(ValidationError, match="layers"):
        Additive.Options(
            parts=[{"name": "quantize", "k": 2, "layers": ["fc*"]}, {"name": "binarize"}]
        )
    with pytest.raises(ValidationError):
        Additive.Options(parts=[{"name": "quantize", "k": 2}])
    with pytest.raises(ValidationError):
        Additive.Options(parts=[{"name": "additive", "parts": []}, {"name": "binarize"}])


def test_with_mu_reaches_mu_dependent_parts():
    compressor = additive(
        [{"name": "lowrank_select", "alpha": 1e-3}, {"name": "prune", "keep": 0.1}]
    )
    moved = compressor.with_mu(5.0)
    assert isinstance(moved.parts[0], LowRankSelect) and moved.parts[0].options.mu == 5.0
    assert compressor.parts[0].options.mu == 1.0
    assert moved.parts[1] is compressor.parts[1]


def test_registered_through_the_hook():
    registered = []
    builtin_compressors.register_compressors(register=registered.append)
    names = {cls.name for cls in registered}
    assert names == {
        "prune", "prune_l1", "prune_structured", "quantize", "binarize", "binarize_scaled",
        "ternarize_scaled", "lowrank", "lowrank_select", "additive", "sparse_lowrank",
        "greedy_random",
    }  # fmt: skip
    for cls in registered:
        assert cls.version == "1" and cls.summary()
        for field_name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{field_name} has no description"
