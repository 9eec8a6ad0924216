"""The fast Pareto fronts (DuckDB window for two objectives, numpy skyline for more)
against a brute-force pairwise front, with ties, duplicates and missing values."""

from __future__ import annotations

import itertools

import duckdb
import numpy as np
import pandas as pd
import pytest

from benchharness.report.front import front_sql, mark_front, pareto_mask
from benchharness.report.objectives import Objective


def brute_force(values: np.ndarray) -> np.ndarray:
    """Non-dominated rows (larger is better), by comparing every pair."""
    n = len(values)
    finite = np.isfinite(values).all(axis=1)
    keep = finite.copy()
    for i, j in itertools.product(range(n), range(n)):
        if i != j and finite[i] and finite[j]:
            if (values[j] >= values[i]).all() and (values[j] > values[i]).any():
                keep[i] = False
    return keep


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("trial", range(15))
def test_skyline_matches_brute_force(k: int, trial: int) -> None:
    rng = np.random.default_rng(100 * k + trial)
    values = rng.integers(0, 5, size=(int(rng.integers(1, 40)), k)).astype(float)
    values[rng.random(len(values)) < 0.1, 0] = np.nan  # never on the front
    assert (pareto_mask(values) == brute_force(values)).all()


def _sql_front(df: pd.DataFrame, chosen: list[Objective]) -> pd.Series:
    con = duckdb.connect()
    con.register("agg_df", df)
    con.execute("CREATE TABLE agg AS SELECT * FROM agg_df")
    out = con.execute(front_sql("agg", chosen) + " ORDER BY config_id").df()
    return out.set_index("config_id")["on_front"]


@pytest.mark.parametrize("trial", range(25))
def test_duckdb_window_front_matches_brute_force(trial: int) -> None:
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 60))
    df = pd.DataFrame(
        {
            "spec_name": rng.choice(["a", "b"], n),
            "quick": rng.random(n) < 0.3,
            "config_id": [f"c{i:03d}" for i in range(n)],
            "n": rng.integers(0, 3, n),  # n = 0: never on the front, never dominates
            "x_mean": rng.integers(0, 6, n).astype(float),  # small grids: many ties
            "y_mean": rng.integers(0, 6, n).astype(float),
        }
    )
    df.loc[rng.random(n) < 0.1, "y_mean"] = np.nan
    df.loc[df["n"] == 0, ["x_mean", "y_mean"]] = np.nan
    for maximize in itertools.product([True, False], repeat=2):
        chosen = [Objective("x", maximize[0]), Objective("y", maximize[1])]
        expected = pd.Series(False, index=df["config_id"])
        for _, group in df.groupby(["spec_name", "quick"]):
            signs = np.array([1.0 if m else -1.0 for m in maximize])
            values = group[["x_mean", "y_mean"]].to_numpy() * signs
            expected[group["config_id"].to_numpy()] = brute_force(values)
        got = _sql_front(df, chosen)
        assert got.to_dict() == expected.to_dict(), maximize
        assert (mark_front(df, chosen).to_numpy() == expected.to_numpy()).all()


@pytest.mark.parametrize("k", [2, 3])
def test_skyline_in_blocks_matches_brute_force(k: int) -> None:
    """More points than one block, so the vectorised pre-filter of later blocks runs."""
    rng = np.random.default_rng(k)
    values = rng.integers(0, 40, size=(1500, k)).astype(float)
    values[:, 1] -= values[:, 0]  # anti-correlated: a front of many points
    beaten = (
        (values[None, :, :] >= values[:, None, :]).all(axis=2)
        & (values[None, :, :] > values[:, None, :]).any(axis=2)
    ).any(axis=1)  # [i, j]: j dominates i
    assert (pareto_mask(values) == ~beaten).all()
    assert (~beaten).sum() > 10
