"""The Pareto front: which configurations no other of the same group beats.

A configuration a is *dominated* when another b of its group is at least as good on
every objective and strictly better on one; the front is the non-dominated ones.

* Two objectives: in DuckDB, O(n log n). Orient both objectives to "larger is better"
  (x, y); a is non-dominated iff y_a is the largest y among the points with x = x_a and
  strictly larger than every y among the points with a larger x. One GROUP BY (best y per
  x) and one running-max window over x descending give both (:func:`front_sql`).
* Three or more: a sort-filter skyline in numpy (:func:`pareto_mask`): after a
  lexicographic sort (best first) a point can only be dominated by an earlier one, and
  only front points need checking (dominance is transitive); blocks of points are first
  compared with the front found so far in one vectorised step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from benchharness.report.objectives import Objective
from benchharness.store import quote_ident

GROUP = ("spec_name", "quick")
_BLOCK = 512  # points compared at once with the front found so far


def front_sql(source: str, chosen: Sequence[Objective]) -> str:
    """A SELECT of every row of the CTE/table ``source`` plus a boolean ``on_front``
    (NULL when there are not exactly two objectives: the caller then uses
    :func:`mark_front`). Rows with n = 0 or a non-finite objective mean are never on
    the front and never dominate."""
    if len(chosen) != 2:
        return f"SELECT s.*, CAST(NULL AS BOOLEAN) AS on_front FROM {source} s"
    (x, y) = (_oriented("s", o) for o in chosen)
    finite = " AND ".join(f"isfinite(s.{quote_ident(o.metric + '_mean')})" for o in chosen)
    group = ", ".join(GROUP)
    return f"""
SELECT s.*, coalesce(p.on_front, FALSE) AS on_front FROM {source} s
LEFT JOIN (
  SELECT {group}, x, (y = best_y AND (better_y IS NULL OR y > better_y)) AS on_front, cid
  FROM (
    SELECT c.*, b.best_y, b.better_y FROM (
      SELECT {group}, config_id AS cid, {x} AS x, {y} AS y
      FROM {source} s WHERE s.n > 0 AND {finite}
    ) c JOIN (
      SELECT {group}, x, best_y,
             max(best_y) OVER (
               PARTITION BY {group} ORDER BY x DESC
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
             ) AS better_y
      FROM (
        SELECT {group}, {x} AS x, max({y}) AS best_y
        FROM {source} s WHERE s.n > 0 AND {finite}
        GROUP BY ALL
      )
    ) b USING ({group}, x)
  )
) p ON p.spec_name = s.spec_name AND p.quick = s.quick AND p.cid = s.config_id"""


def _oriented(alias: str, objective: Objective) -> str:
    column = f"{alias}.{quote_ident(objective.metric + '_mean')}"
    return column if objective.maximize else f"-{column}"


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n × k, larger is better in
    every column; rows with a non-finite value are never on the front and dominate
    nothing)."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    mask = np.zeros(n, dtype=bool)
    finite = np.flatnonzero(np.isfinite(values).all(axis=1))
    if len(finite) == 0:
        return mask
    points = values[finite]
    order = np.lexsort(points.T[::-1])[::-1]  # best first: by column 0, then 1, ...
    front: list[int] = []
    front_values = np.empty((0, points.shape[1]))
    for start in range(0, len(order), _BLOCK):
        block = order[start : start + _BLOCK]
        if len(front):  # most points fall to the front so far: drop them in one go
            p = points[block][:, None, :]
            beaten = ((front_values >= p).all(axis=2) & (front_values > p).any(axis=2)).any(1)
            block = block[~beaten]
        for i in block:
            p = points[i]
            if len(front):
                ge = (front_values >= p).all(axis=1)
                gt = (front_values > p).any(axis=1)
                if (ge & gt).any():
                    continue
            front.append(i)
            front_values = np.vstack([front_values, p])
    mask[finite[front]] = True
    return mask


def oriented_values(df: pd.DataFrame, chosen: Sequence[Objective]) -> np.ndarray:
    """The objective means of a summary as an n × k array, larger is better."""
    columns = [
        df[o.metric + "_mean"].to_numpy(dtype=float) * (1.0 if o.maximize else -1.0) for o in chosen
    ]
    return np.column_stack(columns) if columns else np.empty((len(df), 0))


def mark_front(df: pd.DataFrame, chosen: Sequence[Objective]) -> pd.Series:
    """``on_front`` of every row of a summary, per (spec_name, quick) group, computed
    with :func:`pareto_mask` (rows with n = 0 are never on the front)."""
    values = oriented_values(df, chosen)
    values[(df["n"].to_numpy() == 0)] = np.nan
    result = np.zeros(len(df), dtype=bool)
    for _, index in df.groupby(list(GROUP), sort=False).indices.items():
        result[index] = pareto_mask(values[index])
    return pd.Series(result, index=df.index, name="on_front")
