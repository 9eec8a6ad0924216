"""The pandas-free report pieces against independent references: the Python Pareto
fronts (1, 3 objectives; 4 via numpy) against a brute-force pairwise front, and the
rows-to-DataFrame conversion against DuckDB's own ``.df()``."""

from __future__ import annotations

import itertools
import math
import random

import duckdb
import pandas as pd
import pytest

from benchharness.report.front import non_dominated
from benchharness.report.table import Table
from benchharness.report.units import missing


def brute_force(points: list[list[float]]) -> list[bool]:
    """Non-dominated points (larger is better) by comparing every pair."""
    finite = [all(math.isfinite(v) for v in p) for p in points]
    keep = list(finite)
    for i, j in itertools.product(range(len(points)), repeat=2):
        if i != j and finite[i] and finite[j]:
            a, b = points[i], points[j]
            if all(y >= x for x, y in zip(a, b, strict=True)) and any(
                y > x for x, y in zip(a, b, strict=True)
            ):
                keep[i] = False
    return keep


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("trial", range(40))
def test_python_front_matches_brute_force(k: int, trial: int) -> None:
    rng = random.Random(1000 * k + trial)
    grid = rng.choice([2, 4, 10])  # small grids: many ties and duplicates
    points = [[float(rng.randrange(grid)) for _ in range(k)] for _ in range(rng.randrange(1, 60))]
    for p in points:
        if rng.random() < 0.1:
            p[rng.randrange(k)] = rng.choice([math.nan, math.inf, -math.inf])
    assert non_dominated(points) == brute_force(points)


def test_three_objective_front_on_an_anti_correlated_cloud() -> None:
    """Many points, most of them on the front: the staircase is long and often cut."""
    rng = random.Random(7)
    points = []
    for _ in range(700):
        x, y = rng.randrange(60), rng.randrange(60)
        points.append([float(x), float(y), float(120 - x - y + rng.randrange(3))])
    assert non_dominated(points) == brute_force(points)


def test_rows_become_the_dataframe_duckdb_would_give() -> None:
    con = duckdb.connect()
    sql = """SELECT * FROM (VALUES
        ('a', 1::BIGINT, 2::BIGINT, 0.5::DOUBLE, true, true, '{"x": 1}'),
        ('b', 3::BIGINT, NULL, NULL, false, NULL, NULL)
    ) t(name, n, maybe, value, flag, maybe_flag, js)"""
    result = con.execute(sql)
    described = [(d[0], str(d[1])) for d in result.description]
    table = Table([n for n, _ in described], [t for _, t in described], result.fetchall())
    expected = con.execute(sql).df()
    got = table.to_frame()
    assert list(got.columns) == list(expected.columns)
    for column in ("n", "maybe", "value", "flag"):
        assert got[column].dtype == expected[column].dtype, column
    assert got["maybe_flag"].dtype == "boolean"
    for column in expected.columns:
        for a, b in zip(got[column], expected[column], strict=True):
            assert (missing(a) and missing(b)) or a == b, column
    back = Table.from_frame(got)
    assert back.rows == [(*r[:2], *(None if missing(v) else v for v in r[2:])) for r in table.rows]
    assert back.is_number("maybe") and not back.is_number("flag") and not back.is_number("name")


def test_records_are_typed_as_pandas_would_type_them() -> None:
    records = [
        {"n": 1, "x": 0.5, "q": None, "s": "a", "f": True},
        {"n": 2, "x": 1, "q": False, "s": None, "f": False},
    ]
    table = Table.from_records(["n", "x", "q", "s", "f"], records)
    expected = pd.DataFrame(records, columns=["n", "x", "q", "s", "f"])
    got = table.to_frame()
    for column in expected.columns:
        assert got[column].dtype == expected[column].dtype, column
    assert table.is_number("n") and table.is_number("x") and not table.is_number("f")


def _awkward_frames() -> dict[str, pd.DataFrame]:
    aware = pd.to_datetime(
        ["2026-01-02 03:04:05+00:00", "2026-01-02 03:04:05.5+01:00"], format="ISO8601", utc=True
    )
    return {
        "time zones, float32, Int64": pd.DataFrame(
            {
                "t": aware.tz_convert("Europe/Berlin"),
                "f": pd.array([0.1, None], dtype="float32"),
                "i": pd.array([1, None], dtype="Int64"),
                "d": [0.1, 2.0],
            }
        ),
        "objects, quoting, inf": pd.DataFrame(
            {
                "s": ["a", None, 'c,"q"'],
                "b": [True, False, True],
                "nb": pd.array([True, None, False], dtype="boolean"),
                "o": [{"a": 1}, [1, 2], None],
                "x": [1.5, math.inf, math.nan],
                "td": pd.to_timedelta([1, 2, 3], unit="s"),
            }
        ),
        "dates, ms, NaT": pd.DataFrame(
            {
                "day": pd.to_datetime(["2026-01-02", "2026-01-03"]),
                "ms": pd.to_datetime(["2026-01-02 01:00:00.25", None]),
            }
        ),
        "empty": pd.DataFrame({"a": pd.Series([], dtype="float64")}),
    }


@pytest.mark.parametrize("name", list(_awkward_frames()))
def test_csv_of_a_dataframe_is_what_pandas_writes(name: str) -> None:
    from benchharness.report.text import render

    df = _awkward_frames()[name]
    assert render(df, "csv") == df.to_csv(index=False).rstrip("\n")
