"""The Pareto front: which configurations no other of the same group beats.

A configuration a is *dominated* when another b of its group is at least as good on
every objective and strictly better on one; the front is the non-dominated ones.

* Two objectives: in DuckDB, O(n log n). Orient both objectives to "larger is better"
  (x, y); a is non-dominated iff y_a is the largest y among the points with x = x_a and
  strictly larger than every y among the points with a larger x. One GROUP BY (best y per
  x) and one running-max window over x descending give both (:func:`front_sql`).
* One or three: in plain Python (:func:`non_dominated`), so that a text report imports
  no numpy. Three objectives are Kung's sweep, O(n log n): points in order of x
  descending, each checked against the staircase of the (y, z) the points of larger x
  reach (a bisection), points of equal x against each other in two dimensions.
* Four or more: a sort-filter skyline in numpy (:func:`pareto_mask`): after a
  lexicographic sort (best first) a point can only be dominated by an earlier one, and
  only front points need checking (dominance is transitive); blocks of points are first
  compared with the front found so far in one vectorised step.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from benchharness.report.objectives import Objective
from benchharness.store import quote_ident

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from benchharness.report.table import Table

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


def non_dominated(points: Sequence[Sequence[float]]) -> list[bool]:
    """Whether each point (larger is better in every coordinate) is on the front: no
    other point is at least as good in every coordinate and better in one. Points with a
    non-finite (or NaN) coordinate are never on the front and dominate nothing."""
    flags = [False] * len(points)
    finite = [i for i, p in enumerate(points) if all(math.isfinite(v) for v in p)]
    if not finite:
        return flags
    k = len(points[finite[0]])
    if k >= 4:
        import numpy as np

        kept = pareto_mask(np.array([points[i] for i in finite], dtype=float).reshape(-1, k))
        on_front = [bool(v) for v in kept]
    elif k == 3:
        on_front = _front_3d([points[i] for i in finite])
    elif k == 2:
        on_front = _front_2d([(points[i][0], points[i][1]) for i in finite])
    else:
        best = max(points[i][0] for i in finite)
        on_front = [points[i][0] == best for i in finite]
    for i, flag in zip(finite, on_front, strict=True):
        flags[i] = flag
    return flags


def _front_2d(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Two coordinates: in order of x descending, a point is beaten by a larger y among
    points of larger x, or by a larger y at its own x."""
    flags = [False] * len(points)
    best_before = -math.inf  # the largest y of the points with a larger x
    for same_x in _by_x_descending(points):
        best_here = max(points[i][1] for i in same_x)
        for i in same_x:
            y = points[i][1]
            flags[i] = y == best_here and y > best_before
        best_before = max(best_before, best_here)
    return flags


def _by_x_descending(points: Sequence[Sequence[float]]) -> Iterator[list[int]]:
    """The indices of ``points`` in runs of equal first coordinate, largest first."""
    order = sorted(range(len(points)), key=lambda i: -points[i][0])
    start = 0
    while start < len(order):
        end = start
        x = points[order[start]][0]
        while end < len(order) and points[order[end]][0] == x:
            end += 1
        yield order[start:end]
        start = end


def _front_3d(points: Sequence[Sequence[float]]) -> list[bool]:
    """Kung's sweep for three coordinates (see the module docstring)."""
    flags = [False] * len(points)
    # the staircase: (y, z) reached by points of larger x, y ascending and z descending,
    # none weakly below another; z kept negated so that both lists are ascending
    ys: list[float] = []
    neg_zs: list[float] = []

    def reached(y: float, z: float) -> bool:  # some staircase point has y' ≥ y and z' ≥ z
        i = bisect.bisect_left(ys, y)
        return i < len(ys) and -neg_zs[i] >= z

    for same_x in _by_x_descending(points):
        if len(same_x) == 1:
            inner = [True]
        else:
            inner = _front_2d([(points[i][1], points[i][2]) for i in same_x])
        for i, on_front in zip(same_x, inner, strict=True):
            flags[i] = on_front and not reached(points[i][1], points[i][2])
        for i in same_x:
            y, z = points[i][1], points[i][2]
            if reached(y, z):
                continue
            high = bisect.bisect_right(ys, y)  # ys[:high] <= y
            low = bisect.bisect_left(neg_zs, -z, 0, high)  # and of those, z' <= z
            ys[low:high] = [y]
            neg_zs[low:high] = [-z]
    return flags


def front_flags(table: Table, chosen: Sequence[Objective]) -> list[bool]:
    """``on_front`` of every row of a summary table, per (spec_name, quick) group (rows
    with n = 0 are never on the front)."""
    means = [table.column(o.metric + "_mean") for o in chosen]
    signs = [1.0 if o.maximize else -1.0 for o in chosen]
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, key in enumerate(zip(*(table.column(g) for g in GROUP), strict=True)):
        groups.setdefault(key, []).append(i)
    counts = table.column("n")
    flags = [False] * len(table)
    for members in groups.values():
        points = [
            [math.nan] * len(chosen)
            if counts[i] == 0
            else [_oriented_value(m[i], s) for m, s in zip(means, signs, strict=True)]
            for i in members
        ]
        for i, flag in zip(members, non_dominated(points), strict=True):
            flags[i] = flag
    return flags


def _oriented_value(value: object, sign: float) -> float:
    if value is None:  # a Table holds missing values as None (NaN stays non-finite)
        return math.nan
    return float(value) * sign  # type: ignore[arg-type]


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n × k, larger is better in
    every column; rows with a non-finite value are never on the front and dominate
    nothing)."""
    import numpy as np

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
    import numpy as np

    columns = [
        df[o.metric + "_mean"].to_numpy(dtype=float) * (1.0 if o.maximize else -1.0) for o in chosen
    ]
    return np.column_stack(columns) if columns else np.empty((len(df), 0))


def mark_front(df: pd.DataFrame, chosen: Sequence[Objective]) -> pd.Series:
    """``on_front`` of every row of a summary DataFrame, per (spec_name, quick) group
    (:func:`front_flags`; rows with n = 0 are never on the front)."""
    import pandas as pd

    from benchharness.report.table import Table

    flags = front_flags(Table.from_frame(df), chosen)
    return pd.Series(flags, index=df.index, name="on_front", dtype=bool)
