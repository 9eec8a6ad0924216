"""``bench report --failed``: the failed runs of the results database, and one failed
job's stored error and traceback (``--job ID``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from benchharness.errors import BenchError
from benchharness.keypaths import short
from benchharness.report.table import Table
from benchharness.report.text import FORMATS, render
from benchharness.store import Store

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["failed_job", "failed_rows", "failed_runs", "render_failed"]


def failed_runs(store: Store, spec: str | None = None) -> pd.DataFrame:
    """:func:`failed_rows` as a DataFrame."""
    return failed_rows(store, spec).to_frame()


def failed_rows(store: Store, spec: str | None = None) -> Table:
    """One row per failed run (of spec ``spec`` if given): spec, job id, seed, quick, axes
    (one ``path=value`` text), finish time and the first line of the error, latest first."""
    where, params = ("AND spec_name = ?", [spec]) if spec else ("", [])
    found = Table.fetch(
        store,
        "SELECT spec_name AS spec, job_id, seed, quick, axes, finished_at, error FROM runs"
        f" WHERE status = 'failed' {where}"
        " ORDER BY finished_at DESC NULLS LAST, spec_name, job_id",
        params,
    )
    axes, error = found.columns.index("axes"), found.columns.index("error")
    found.types[axes] = found.types[error] = "VARCHAR"
    found.rows = [
        (*r[:axes], _axes_text(r[axes]), *r[axes + 1 : error], _first_line(r[error]))
        for r in found.rows
    ]
    return found


def render_failed(df: Table | pd.DataFrame, fmt: str = "table") -> str:
    """The failed runs in ``fmt`` (table, csv, json, markdown); a sentence if none."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    table = df if isinstance(df, Table) else Table.from_frame(df)
    if fmt == "table":
        if not len(table):
            return "no failed runs"
        from rich.markup import escape

        # the table is drawn by rich, whose markup would eat e.g. "[quick]" in an error
        for name in ("spec", "axes", "error"):
            table = table.with_column(name, "VARCHAR", [escape(str(v)) for v in table.column(name)])
    return render(table, fmt)


def failed_job(store: Store, job: str) -> str:
    """The stored error and traceback of the run whose job id is ``job`` or starts with it."""
    rows = Table.fetch(
        store,
        "SELECT job_id, spec_name, seed, status, axes, error,"
        " json_extract_string(extra, '$.traceback') AS traceback"
        " FROM runs WHERE starts_with(job_id, ?) ORDER BY job_id",
        [job],
    ).records()
    if not rows:
        raise BenchError(f"--job: no run with a job id starting with '{job}'")
    if len(rows) > 1:
        ids = ", ".join(r["job_id"] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
        raise BenchError(f"--job: '{job}' is the start of {len(rows)} job ids ({ids})")
    row: dict[str, Any] = rows[0]
    axes = _axes_text(row["axes"])
    head = f"job {row['job_id']} of {row['spec_name']}, seed {row['seed']}" + (
        f", {axes}" if axes else ""
    )
    if row["status"] != "failed":
        return f"{head}: {row['status']}, no error"
    lines = [f"{head}: failed", str(row["error"] or "(no error message)")]
    traceback = row["traceback"]
    if isinstance(traceback, str) and traceback.strip():
        lines += ["", traceback.rstrip()]
    else:
        lines += [
            "",
            "(no traceback stored: the harness reported this error itself, e.g. a diverged"
            " loss, a plugin's BenchError or a worker that died)",
        ]
    return "\n".join(lines)


def _axes_text(axes_json: Any) -> str:
    try:
        axes = json.loads(axes_json) if isinstance(axes_json, str) else {}
    except ValueError:
        return str(axes_json)
    return " ".join(f"{path}={short(value)}" for path, value in axes.items())


def _first_line(error: Any) -> str:
    lines = str(error or "").splitlines()
    return lines[0] if lines else "(no error message)"
