"""Reports over the results database: mean ± standard error over seeds, the accuracy/cost
Pareto front and published claims, computed in DuckDB SQL, rendered as a terminal table,
CSV, JSON or Markdown.

Modules: ``objectives`` (metric aliases, ``metric:max|min``), ``columns`` (what the runs
hold), ``aggregate`` (the summary query), ``table`` (query results as plain rows), ``text``
(rendering), ``failed`` (failed runs). The text reports import neither pandas nor numpy;
``summarize`` and the plots, HTML and noise build DataFrames from the same rows.
"""

from __future__ import annotations

from benchharness.report.aggregate import summarize
from benchharness.report.objectives import (
    ALIASES,
    DEFAULT_OBJECTIVES,
    NUMERIC_METRICS,
    Objective,
    parse_objectives,
)
from benchharness.report.text import FORMATS, TABLE_METRICS, render
from benchharness.store import Store

__all__ = [
    "ALIASES",
    "DEFAULT_OBJECTIVES",
    "FORMATS",
    "NUMERIC_METRICS",
    "TABLE_METRICS",
    "Objective",
    "parse_objectives",
    "render",
    "run_sql",
    "summarize",
]


def run_sql(store: Store, sql: str, fmt: str = "table") -> str:
    """``bench report --sql``: a read-only query, rendered in ``fmt``."""
    return render(store.query(sql), fmt)
