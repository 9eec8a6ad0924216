"""Hypervolume against a brute-force count of unit cells on integer grids (2-4
objectives), and ``--against``: entered/left configurations and hypervolumes of two
databases."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from benchharness.records import RunRecord
from benchharness.report.against import against
from benchharness.report.hypervolume import hypervolume
from benchharness.store import Store


def cell_count(points: np.ndarray, reference: np.ndarray) -> int:
    """Unit cells [c, c + 1) above ``reference`` dominated by a point (integer coords)."""
    top = points.max(axis=0)
    ranges = [range(int(r), int(t)) for r, t in zip(reference, top, strict=True)]
    return sum(
        any((p >= np.array(cell) + 1).all() for p in points) for cell in itertools.product(*ranges)
    )


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("trial", range(6))
def test_hypervolume_matches_cell_count(k: int, trial: int) -> None:
    rng = np.random.default_rng(10 * k + trial)
    points = rng.integers(0, 6, size=(int(rng.integers(1, 12)), k)).astype(float)
    reference = np.zeros(k)
    assert hypervolume(points, reference) == cell_count(points, reference)


def test_hypervolume_ignores_points_not_above_the_reference() -> None:
    assert hypervolume(np.array([[1.0, 5.0], [3.0, 0.0]]), np.array([0.0, 0.0])) == 5.0
    assert hypervolume(np.empty((0, 2)), np.zeros(2)) == 0.0


def _save(store: Store, config: str, accuracy: float, size: float) -> None:
    store.save(
        RunRecord(
            job_id=f"{config}-{store.path.stem}",
            config_id=config,
            spec_name="s",
            spec_hash="h",
            quick=False,
            seed=0,
            config={"c": config},
            axes={"c": config},
            status="completed",
            error=None,
            metrics={"test_accuracy": accuracy, "size_bits": size},
            extra={},
        )
    )


def test_against_reports_hypervolumes_and_front_changes(tmp_path: Path) -> None:
    old, new = Store(tmp_path / "old.duckdb"), Store(tmp_path / "new.duckdb")
    for config, accuracy, size in [("a", 0.9, 100), ("b", 0.8, 50), ("c", 0.5, 40)]:
        _save(old, config, accuracy, size)
    for config, accuracy, size in [("a", 0.9, 100), ("b", 0.7, 60), ("d", 0.85, 40)]:
        _save(new, config, accuracy, size)
    (row,) = against(new, old, objectives="accuracy:max,size:min").to_dict("records")
    assert row["entered"] == ["d"] and sorted(row["left"]) == ["b", "c"]
    assert (row["front"], row["front_other"]) == (2, 3)
    # by hand, accuracy scaled over [0.5, 0.9] and -size over [-100, -40]:
    # new front a (1, 0), d (0.875, 1): 0.875; old a (1, 0), b (0.75, 50/60), c (0, 1)
    assert row["hypervolume"] == pytest.approx(0.875)
    assert row["hypervolume_other"] == pytest.approx(0.75 * 50 / 60)
    assert row["difference"] == pytest.approx(0.875 - 0.625)
