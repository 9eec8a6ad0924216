"""``bench report --failed``: the failed runs of the results database, and one failed
job's stored error and traceback (``--job ID``)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from benchharness.errors import BenchError
from benchharness.keypaths import short
from benchharness.report.text import FORMATS, render
from benchharness.store import Store

__all__ = ["failed_job", "failed_runs", "render_failed"]


def failed_runs(store: Store, spec: str | None = None) -> pd.DataFrame:
    """One row per failed run (of spec ``spec`` if given): spec, job id, seed, quick, axes
    (one ``path=value`` text), finish time and the first line of the error, latest first."""
    where, params = ("AND spec_name = ?", [spec]) if spec else ("", [])
    rows = store.query(
        "SELECT spec_name, job_id, seed, quick, axes, error, finished_at FROM runs"
        f" WHERE status = 'failed' {where}"
        " ORDER BY finished_at DESC NULLS LAST, spec_name, job_id",
        params,
    )
    return pd.DataFrame(
        {
            "spec": rows["spec_name"],
            "job_id": rows["job_id"],
            "seed": rows["seed"],
            "quick": rows["quick"],
            "axes": [_axes_text(a) for a in rows["axes"]],
            "finished_at": rows["finished_at"],
            "error": [_first_line(e) for e in rows["error"]],
        }
    )


def render_failed(df: pd.DataFrame, fmt: str = "table") -> str:
    """The failed runs in ``fmt`` (table, csv, json, markdown); a sentence if none."""
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if fmt == "table":
        if df.empty:
            return "no failed runs"
        from rich.markup import escape

        # the table is drawn by rich, whose markup would eat e.g. "[quick]" in an error
        df = df.assign(**{c: [escape(str(v)) for v in df[c]] for c in ("spec", "axes", "error")})
    return render(df, fmt)


def failed_job(store: Store, job: str) -> str:
    """The stored error and traceback of the run whose job id is ``job`` or starts with it."""
    rows = store.query(
        "SELECT job_id, spec_name, seed, status, axes, error,"
        " json_extract_string(extra, '$.traceback') AS traceback"
        " FROM runs WHERE starts_with(job_id, ?) ORDER BY job_id",
        [job],
    )
    if rows.empty:
        raise BenchError(f"--job: no run with a job id starting with '{job}'")
    if len(rows) > 1:
        ids = ", ".join(rows["job_id"][:5]) + (", ..." if len(rows) > 5 else "")
        raise BenchError(f"--job: '{job}' is the start of {len(rows)} job ids ({ids})")
    row: dict[str, Any] = rows.iloc[0].to_dict()
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
