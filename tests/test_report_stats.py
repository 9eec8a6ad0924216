"""Report statistics against independent computations: the verdict rule by hand, Welch's
interval and P(A beats B) from the textbook formulas in float64, the seeds-needed formula,
the paired bootstrap against its own resampling, and the noise-aware front."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from benchharness.records import RunRecord
from benchharness.report import summarize
from benchharness.report.noise import noisy_front
from benchharness.report.stats import claim_z, compare_samples, seeds_needed, verdict
from benchharness.store import Store


@pytest.mark.parametrize(
    ("n", "mean", "se", "claimed", "claimed_se", "expected"),
    [
        (0, None, None, 0.9, 0.01, "not run"),
        (1, 0.95, None, 0.9, 0.01, "too few seeds"),
        # combined SE = sqrt(0.6² + 0.8²) = 1 (accuracy in %: exact in binary floats)
        (3, 92.0, 0.6, 90.0, 0.8, "not reproduced (higher)"),  # 2 SE + ε
        (3, 91.5, 0.6, 90.0, 0.8, "reproduced"),  # 1.5 SE
        (3, 88.0, 0.6, 90.0, 0.8, "reproduced"),  # exactly 2 SE: inside
        (3, 0.87, 0.006, 0.90, None, "not reproduced (lower)"),  # 5 SE, claim without SE
        (2, 0.9, 0.0, 0.9, None, "reproduced"),  # identical, no spread
    ],
)
def test_verdict_rule(n, mean, se, claimed, claimed_se, expected) -> None:
    if expected == "not reproduced (higher)":
        mean += 1e-9  # just over 2 combined SE
    assert verdict(n, mean, se, claimed, claimed_se) == expected


def test_claim_z_by_hand() -> None:
    assert claim_z(0.92, 0.006, 0.90, 0.008) == pytest.approx(0.02 / 0.01)
    assert claim_z(1.0, 0.0, 0.5, None) == math.inf


def test_welch_comparison_matches_textbook_formulas() -> None:
    a = np.array([0.91, 0.93, 0.92, 0.95, 0.94])
    b = np.array([0.90, 0.89, 0.93, 0.91])
    result = compare_samples("test_accuracy", a, b, maximize=True)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    diff = a.mean() - b.mean()
    half = sps.t.ppf(0.975, df) * se
    assert result.method == "welch"
    assert result.difference == pytest.approx(diff)
    assert (result.low, result.high) == pytest.approx((diff - half, diff + half))
    assert result.p_a_beats_b == pytest.approx(sps.t.cdf(diff / se, df))
    # minimising instead: A "beats" B when it is lower
    flipped = compare_samples("test_loss", a, b, maximize=False)
    assert flipped.p_a_beats_b == pytest.approx(1 - result.p_a_beats_b)
    z = sps.norm.ppf(0.975) + sps.norm.ppf(0.8)
    n = z**2 * (a.var(ddof=1) + b.var(ddof=1)) / diff**2
    assert result.seeds_needed == max(2, math.ceil(n))


def test_seeds_needed_formula() -> None:
    # Δ = 1 with unit spreads: (1.95996 + 0.84162)² · 2 = 15.7 → 16 seeds each
    assert seeds_needed(1.0, 1.0, 1.0) == 16
    assert seeds_needed(0.0, 1.0, 1.0) is None
    assert seeds_needed(10.0, 0.1, 0.1) == 2


def test_paired_bootstrap_is_seeded_and_brackets_the_mean_difference() -> None:
    a = np.array([0.91, 0.93, 0.92, 0.95, 0.94, 0.90])
    b = a - np.array([0.01, 0.02, 0.0, 0.015, 0.01, 0.005])
    one = compare_samples("test_accuracy", a, b, paired=True, seed=3)
    two = compare_samples("test_accuracy", a, b, paired=True, seed=3)
    assert one == two and one.method == "paired bootstrap"
    d = a - b
    assert one.low <= d.mean() <= one.high
    assert d.min() <= one.low and one.high <= d.max()
    # every per-seed difference is ≥ 0 and one is 0: only all-zero resamples (p = 6⁻⁶) tie
    assert one.p_a_beats_b > 0.999


def _record(config: str, seed: int, accuracy: float, size: float) -> RunRecord:
    return RunRecord(
        job_id=f"{config}-{seed}",
        config_id=config,
        spec_name="s",
        spec_hash="h",
        quick=False,
        seed=seed,
        config={"c": config},
        axes={"c": config},
        status="completed",
        error=None,
        metrics={"test_accuracy": accuracy, "size_bits": size},
        extra={},
    )


def test_noise_aware_front(tmp_path: Path) -> None:
    store = Store(tmp_path / "bench.duckdb")
    runs = {
        "best": [0.95, 0.96, 0.94],  # size 100: the clear winner over "worse"
        "close": [0.948, 0.96, 0.941],  # size 100 too, mean 0.95 - 0.0003: within noise
        "worse": [0.50, 0.51, 0.49],  # size 100: dominated by far
        "small": [0.80, 0.81, 0.79],  # size 50: on the front by size
    }
    sizes = {"best": 100, "close": 100, "worse": 100, "small": 50}
    for config, values in runs.items():
        for seed, accuracy in enumerate(values):
            store.save(_record(config, seed, accuracy, sizes[config]))
    summary = summarize(store, objectives="accuracy:max,size:min")
    first = noisy_front(store, summary, draws=400, seed=1).set_index("config_id")
    again = noisy_front(store, summary, draws=400, seed=1).set_index("config_id")
    assert first["p_front"].equals(again["p_front"])  # seeded: reports are deterministic
    assert first.loc["worse", "p_front"] == 0 and first.loc["worse", "dominance"] == "clear"
    assert first.loc["small", "p_front"] == 1 and first.loc["small", "dominance"] == "front"
    assert first.loc["best", "dominance"] == "front"
    assert first.loc["close", "dominance"] == "within noise"
    # best and close swap places under resampling; brute force over the 3^3 × 3^3 = 729
    # equally likely seed resamplings of the two gives the exact probability
    picks = [np.array(runs["best"])[list(i)].mean() for i in np.ndindex(3, 3, 3)]
    closes = [np.array(runs["close"])[list(i)].mean() for i in np.ndindex(3, 3, 3)]
    exact = np.mean([c >= b for c in closes for b in picks])
    assert first.loc["close", "p_front"] == pytest.approx(exact, abs=0.08)
    assert 0 < first.loc["close", "p_front"] < 1
