"""``bench report --html``: one self-contained HTML file — the front plots, the
configurations, the claims with their verdicts, the curves and the provenance of the runs.

Self-contained means viewable offline: plots are inlined as base64 PNG ``data:`` URIs,
the CSS is inline, there is no JavaScript and no reference to any other resource. Every
piece of text from the database is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import math
import numbers
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchharness.errors import BenchError
from benchharness.keypaths import short
from benchharness.records import PROVENANCE_COLUMNS
from benchharness.report.aggregate import summarize
from benchharness.report.claims import claims_table
from benchharness.report.curve_plots import curve_figures
from benchharness.report.curves import curve_summary
from benchharness.report.noise import noisy_front
from benchharness.report.plots import (
    axis_scale,
    config_labels,
    figure_bytes,
    front_figure,
    groups,
)
from benchharness.store import Store, quote_ident

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1250px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .55em; text-align: left;
         vertical-align: top; }
td { overflow-wrap: anywhere; max-width: 32em; }
td.num { overflow-wrap: normal; white-space: nowrap; }
caption { text-align: left; font-weight: 600; padding: .2em 0; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.front td { background: #fdeeee; }
.verdict-reproduced { color: #1a7f37; font-weight: 600; }
.verdict-not { color: #c62828; font-weight: 600; }
.verdict-other { color: #8a6d00; font-weight: 600; }
figure { margin: .8em 0; } figure img { max-width: 100%; height: auto; }
figcaption, .note { color: #555; font-size: .85em; }
"""


def write_html(
    store: Store,
    path: str | Path,
    *,
    spec: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
) -> Path:
    """Write the report for the selected runs to ``path`` (replacing it atomically)."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:  # fail before the work of rendering if the file cannot be written
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.touch()
        summary = noisy_front(store, summarize(store, spec=spec, objectives=objectives))
        partial.write_text(render_html(store, summary, spec=spec), encoding="utf-8")
        partial.replace(target)
    except OSError as error:
        raise BenchError(f"--html: cannot write {target}: {error.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    return target


def render_html(
    store: Store, summary: pd.DataFrame, *, spec: str | Sequence[str] | None = None
) -> str:
    """The report page for a ``summarize`` result (and the curves, claims and provenance
    of the same runs) as one HTML document."""
    curves = curve_summary(store, spec=spec)
    claims = claims_table(store, spec=spec)
    axes = list(summary.attrs.get("axes", []))
    body = [
        "<h1>benchharness report</h1>",
        f"<p class='note'>{_e(len(summary))} configurations from {_e(store.path.name)},"
        f" generated {_e(datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC'))}. Objectives: "
        f"{_e(', '.join(summary.attrs.get('objectives', [])))}. Means over seeds ± one"
        " standard error; n = number of seeds.</p>",
    ]
    for stem, part in groups(summary):
        part.attrs = dict(summary.attrs)
        spec_name, quick = str(part["spec_name"].iloc[0]), bool(part["quick"].iloc[0])
        body.append(f"<h2>{_e(spec_name)}{' (quick)' if quick else ''}</h2>")
        body.append(_front_section(part, stem))
        body.append(_configurations_table(part, axes))
        of_group = claims["quick"].isna() | (claims["quick"] == quick)  # NA: "not run"
        body.append(_claims_section(claims[(claims["spec_name"] == spec_name) & of_group], part))
        for name, fig in curve_figures(curves, part):
            caption = f"Curves {name}: mean over seeds, band ± 1 SE (where n > 1)."
            body.append(_figure(fig, caption))
    body.append(_provenance_section(store, spec))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>benchharness report</title><style>{_CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _front_section(part: pd.DataFrame, stem: str) -> str:
    try:
        fig = front_figure(part, stem.replace("-quick", " (quick)"))
    except BenchError as error:
        return f"<p class='note'>No front plot: {_e(error)}</p>"
    caption = (
        "Each point is a configuration at its mean over seeds, numbered as in the table"
        " below; bars are ± 1 SE on both axes (n > 1); red points are on the Pareto front."
    )
    return _figure(fig, caption)


def _figure(fig: Any, caption: str) -> str:
    data = base64.b64encode(figure_bytes(fig, "png")).decode("ascii")
    return (
        f"<figure><img alt='{_e(caption)}' src='data:image/png;base64,{data}'>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _configurations_table(part: pd.DataFrame, axes: list[str]) -> str:
    labels = config_labels(part, axes)
    metrics = [str(o).rpartition(":")[0] for o in part.attrs.get("objectives", [])]
    metrics = [m for m in metrics if f"{m}_mean" in part.columns]
    extra = [c for c in ("p_front", "dominance") if c in part.columns]
    head = ["#", "configuration", "n"]
    scales = {m: axis_scale(m, part[f"{m}_mean"], allow_log=False) for m in metrics}
    head += [scales[m].label for m in metrics] + ["on front"]
    head += [{"p_front": "P(on front) under seed noise"}.get(c, c) for c in extra]
    rows = []
    for number, (_, row) in enumerate(part.iterrows(), start=1):
        cells = [_td(number, True), _td(labels[str(row["config_id"])]), _td(row["n"], True)]
        for m in metrics:
            scale = scales[m].scale
            cells.append(_td(_pm(row[f"{m}_mean"], row.get(f"{m}_se"), scale), True))
        cells.append(_td("yes" if _true(row.get("on_front")) else ""))
        cells += [_td(_plain(row[c]), c == "p_front") for c in extra]
        front = " class='front'" if _true(row.get("on_front")) else ""
        rows.append(f"<tr{front}>{''.join(cells)}</tr>")
    return _table(head, rows, "Configurations")


def _claims_section(claims: pd.DataFrame, part: pd.DataFrame) -> str:
    """Each claim beside the measured mean ± SE of its configuration, with the verdict."""
    if claims.empty:
        return "<p class='note'>No published claims for this spec.</p>"
    labels = config_labels(part, list(part.attrs.get("axes", [])))
    head = ["configuration", "metric", "claimed", "measured", "n", "z", "verdict", "source"]
    rows = []
    for _, row in claims.iterrows():
        unit = axis_scale(row["metric"], [row["claimed"]], allow_log=False)
        config = row["config_id"]
        where = labels.get(str(config), _plain(row["match"])) if not _missing(config) else ""
        cells = [
            _td(where or _plain(row["match"])),
            _td(unit.label),
            _td(_pm(row["claimed"], row["claimed_se"], unit.scale), True),
            _td(_pm(row["mean"], row["se"], unit.scale), True),
            _td(row["n"], True),
            _td("" if _missing(row["z"]) else f"{float(row['z']):+.1f}", True),
            f"<td class='{_verdict_class(row['verdict'])}'>{_e(_plain(row['verdict']))}</td>",
            _td(row["source"]),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    caption = "Claims vs measured (z: difference in combined standard errors)"
    return _table(head, rows, caption)


def _provenance_section(store: Store, spec: str | Sequence[str] | None) -> str:
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    where, params = (
        ("WHERE spec_name IN (SELECT unnest(?::VARCHAR[]))", [specs])
        if specs
        else (
            "",
            [],
        )
    )
    fixed = [c for c in PROVENANCE_COLUMNS if c not in ("started_at", "finished_at")]
    names = ", ".join(f"CAST({quote_ident(c)} AS VARCHAR) AS {quote_ident(c)}" for c in fixed)
    df = store.query(
        f"""SELECT spec_name, quick, {names}, count(*) AS runs,
                   min(started_at) AS first_start, max(finished_at) AS last_end
            FROM runs {where}
            GROUP BY ALL ORDER BY spec_name, quick, first_start""",
        params,
    )
    head = [c.replace("_", " ") for c in df.columns]
    rows = [
        "<tr>" + "".join(_td(_plain(v), _is_number(v)) for v in row) + "</tr>"
        for row in df.itertuples(index=False, name=None)
    ]
    return "<h2>Provenance</h2>" + _table(head, rows, "Where the runs come from")


def _table(head: list[str], rows: list[str], caption: str) -> str:
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    return (
        f"<table><caption>{_e(caption)}</caption><thead><tr>{header}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _td(value: Any, numeric: bool = False) -> str:
    attribute = " class='num'" if numeric else ""
    return f"<td{attribute}>{_e(_plain(value))}</td>"


def _verdict_class(verdict: Any) -> str:
    text = str(verdict).lower()
    if text.startswith("reproduced"):
        return "verdict-reproduced"
    return "verdict-not" if text.startswith("not reproduced") else "verdict-other"


def _pm(mean: Any, se: Any, scale: float) -> str:
    if _missing(mean):
        return ""
    value = float(mean) * scale
    text = f"{value:.4g}"
    return text if _missing(se) else f"{text} ± {float(se) * scale:.2g}"


def _plain(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, dict) and not isinstance(value.get("name"), str):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    if isinstance(value, dict | list):
        return short(value)
    if isinstance(value, pd.Timestamp | datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.4g}"
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return _plain(json.loads(value))
        except ValueError:
            return value
    if hasattr(value, "item") and not isinstance(value, str):
        return _plain(value.item())
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_)


def _true(value: Any) -> bool:
    return not _missing(value) and bool(value)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)
