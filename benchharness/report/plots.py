"""The accuracy/cost front as a plot: one panel per cost objective, mean ± standard error
over seeds as error bars on both axes, the Pareto-front configurations marked and
connected. Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot,
no global backend switch); import this module only when plotting, it loads matplotlib.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from benchharness.errors import BenchError
from benchharness.keypaths import short

FRONT_COLOR = "#d62728"  # front markers and line: tests look for this colour in screenshots
OTHER_COLOR = "#7f7f7f"
PLOT_FORMATS: tuple[str, ...] = ("png", "svg")
_DECADE = 10.0  # values spanning at least this factor get a log axis


class AxisScale:
    """How one metric is drawn: displayed = value * scale, on a log axis or not."""

    def __init__(self, label: str, scale: float = 1.0, log: bool = False):
        self.label, self.scale, self.log = label, scale, log


def axis_scale(metric: str, values: Iterable[float], *, allow_log: bool = True) -> AxisScale:
    """Axis label with its unit, the scale factor and log/linear for ``metric``'s values
    (never log with ``allow_log=False``: units for a table)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    positive = [v for v in finite if v > 0]
    spans = (
        allow_log
        and bool(positive)
        and len(positive) == len(finite)
        and max(positive) >= _DECADE * min(positive)
    )
    peak = max((abs(v) for v in finite), default=0.0)
    if metric in ("test_accuracy", "dense_test_accuracy"):
        label = "test accuracy" if metric == "test_accuracy" else "accuracy before compression"
        return AxisScale(f"{label} (%)", 100.0)
    counts = {
        "flops": "FLOPs per sample (dense)",
        "flops_effective": "effective FLOPs per sample",
        "flops_total": "FLOPs per sample incl. input transform",
        "transform_flops": "input-transform FLOPs per sample",
        "params": "parameters",
        "input_values": "input values per sample",
    }
    if metric in counts:
        if spans:
            return AxisScale(counts[metric], 1.0, True)
        for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if peak >= factor:
                return AxisScale(f"{counts[metric]} ({prefix})", 1 / factor)
        return AxisScale(counts[metric])
    if metric == "size_bits":
        for factor, unit in ((8 * 1024 * 1024, "MiB"), (8 * 1024, "KiB")):
            if peak >= factor:
                return AxisScale(f"compressed size ({unit})", 1 / factor, spans)
        return AxisScale("compressed size (bits)", 1.0, spans)
    if metric.startswith("latency_") and metric.endswith("_ms"):
        return AxisScale(metric[: -len("_ms")].replace("_", " ") + " (ms)", 1.0, spans)
    if metric in ("train_seconds", "compress_seconds"):
        return AxisScale(metric.replace("_seconds", " time (s)").replace("_", " "), 1.0, spans)
    if metric in ("compression_ratio", "input_ratio"):
        return AxisScale(metric.replace("_", " ") + " (×)", 1.0, spans)
    return AxisScale(metric.replace("_", " "), 1.0, spans)


def config_labels(rows: pd.DataFrame, axes: Sequence[str]) -> dict[str, str]:
    """config_id -> a short label such as ``width=0.5, ratio=0.1``: each axis by the last
    part of its path (the full path where two end alike), leaving out axes, and options of
    table-valued axes (``lc(mu0=0.001)``), that are the same for every row."""
    parsed = {a: [_parse(v) for v in rows[a]] if a in rows else [None] * len(rows) for a in axes}
    varying = [a for a in axes if len(rows) < 2 or len({_key(v) for v in parsed[a]}) > 1]
    ends = [a.rsplit(".", 1)[-1] for a in varying]
    same = {a: _same_options(parsed[a]) if len(rows) > 1 else set() for a in varying}
    labels = {}
    for i, config in enumerate(rows.get("config_id", pd.Series(range(len(rows))))):
        parts = []
        for axis, end in zip(varying, ends, strict=True):
            value = parsed[axis][i]
            if value is None:
                continue
            name = end if ends.count(end) == 1 else axis
            if isinstance(value, dict) and isinstance(value.get("name"), str):
                value = {k: v for k, v in value.items() if k == "name" or k not in same[axis]}
            parts.append(f"{name}={_value_text(value)}")
        labels[str(config)] = ", ".join(parts) or str(config)
    return labels


def groups(summary: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The summary split by (spec_name, quick), each with a file-name stem such as
    ``mnist_width_dct-quick``."""
    keys = [c for c in ("spec_name", "quick") if c in summary.columns]
    if not keys or summary.empty:
        return [("all", summary)] if not summary.empty else []
    out = []
    for key, part in summary.groupby(keys, sort=True, dropna=False):
        values = key if isinstance(key, tuple) else (key,)
        spec = str(values[0]) if "spec_name" in keys else "all"
        quick = bool(values[-1]) if "quick" in keys else False
        out.append((slug(spec) + ("-quick" if quick else ""), part))
    return out


def front_figure(summary: pd.DataFrame, title: str = "") -> Figure:
    """Accuracy (the first objective, y) against each other objective (x, one panel each)
    for the configurations of one (spec, quick) group of a ``summarize`` result.

    Every configuration is a point at its mean; configurations with n > 1 get error bars
    of ± one standard error on both axes; front configurations (``on_front``) are
    drawn in :data:`FRONT_COLOR` and joined in order of the panel's x value. Points are
    numbered in row order; the key beside the panels gives each number's configuration.
    """
    objectives = [_objective(text) for text in summary.attrs.get("objectives", [])]
    if len(objectives) < 2:
        raise BenchError("a front plot needs at least two objectives, e.g. accuracy:max,flops:min")
    y_metric = objectives[0][0]
    axes = list(summary.attrs.get("axes", []))
    costs = [o for o in objectives[1:] if f"{o[0]}_mean" in summary.columns]
    if f"{y_metric}_mean" not in summary.columns or not costs:
        names = ", ".join(o[0] for o in objectives)
        raise BenchError(f"no measured values for the objectives {names}")
    labels = config_labels(summary, axes)
    numbers = pd.Series(range(1, len(summary) + 1), index=summary.index)
    fig = Figure(figsize=(4.6 * len(costs) + 3.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    panels = fig.subplots(1, len(costs), squeeze=False)[0]
    for ax, (x_metric, _) in zip(panels, costs, strict=True):
        _front_panel(ax, summary, x_metric, y_metric, numbers)
    blank = [Line2D([], [], linestyle="none") for _ in labels]
    key = [f"{n}  {label}" for n, label in zip(numbers, labels.values(), strict=True)]
    fig.legend(blank, key, loc="outside right upper", fontsize=7, handlelength=0, title="#")
    if title:
        fig.suptitle(title)
    return fig


def _front_panel(
    ax: Any, summary: pd.DataFrame, x_metric: str, y_metric: str, numbers: pd.Series
) -> None:
    x, y = summary[f"{x_metric}_mean"].astype(float), summary[f"{y_metric}_mean"].astype(float)
    keep = np.isfinite(x) & np.isfinite(y)
    rows = summary[keep]
    x, y = x[keep], y[keep]
    xs, ys = axis_scale(x_metric, x), axis_scale(y_metric, y)
    front = rows.get("on_front", pd.Series(False, index=rows.index)).fillna(False).astype(bool)
    xe = _se(rows, x_metric) * xs.scale
    ye = _se(rows, y_metric) * ys.scale
    xd, yd = x * xs.scale, y * ys.scale
    noisy = xe.notna() | ye.notna()
    if noisy.any():
        ax.errorbar(
            xd[noisy], yd[noisy], xerr=xe[noisy].fillna(0), yerr=ye[noisy].fillna(0),
            fmt="none", ecolor="#444444", elinewidth=1, capsize=3, zorder=2,
            label="± 1 SE over seeds",
        )  # fmt: skip
    ax.scatter(
        xd[~front], yd[~front], s=36, facecolors="none", edgecolors=OTHER_COLOR, zorder=3,
        label="dominated",
    )  # fmt: skip
    order = xd[front].sort_values().index
    ax.plot(
        xd[order], yd[order], color=FRONT_COLOR, marker="o", markersize=7, linewidth=1.5,
        zorder=4, label="Pareto front",
    )  # fmt: skip
    for index in rows.index:
        ax.annotate(
            str(numbers[index]), (xd[index], yd[index]), fontsize=7, xytext=(4, 3),
            textcoords="offset points", color="#333333",
        )  # fmt: skip
    for which, scale in (("x", xs), ("y", ys)):
        if scale.log:
            log_axis(ax, which)
    ax.set_xlabel(xs.label)
    ax.set_ylabel(ys.label)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def log_axis(ax: Any, which: str) -> None:
    """A log scale labelled at 1, 2 and 5 times each power of ten in engineering
    notation (2M, 500k), which stays readable when the values span only a decade or two."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    ax.set_xscale("log") if which == "x" else ax.set_yscale("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(EngFormatter(sep=""))
    axis.set_minor_formatter(NullFormatter())


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = 110) -> bytes:
    """The figure encoded as ``png`` or ``svg``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=dpi)
    return buffer.getvalue()


def save_figures(figures: Iterable[tuple[str, Figure]], directory: Path) -> list[Path]:
    """Write each (stem, figure) as ``<stem>.png`` and ``<stem>.svg`` in ``directory``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BenchError(f"--plot: cannot create {directory}: {error.strerror}") from None
    written = []
    for stem, fig in figures:
        for fmt in PLOT_FORMATS:
            path = directory / f"{stem}.{fmt}"
            path.write_bytes(figure_bytes(fig, fmt))
            written.append(path)
    return written


def front_figures(summary: pd.DataFrame) -> list[tuple[str, Figure]]:
    """``front-<spec>[-quick]`` figures, one per (spec, quick) group of a summary."""
    out = []
    for stem, part in groups(summary):
        part.attrs = dict(summary.attrs)
        title = stem.replace("-quick", " (quick)")
        out.append((f"front-{stem}", front_figure(part, title)))
    return out


def slug(text: str) -> str:
    """A file-name-safe form of ``text``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "spec"


def _objective(text: str) -> tuple[str, bool]:
    name, _, way = str(text).rpartition(":")
    return name, way == "max"


def _se(rows: pd.DataFrame, metric: str) -> pd.Series:
    column = rows.get(f"{metric}_se")
    if column is None:
        return pd.Series(float("nan"), index=rows.index)
    return column.astype(float)


def _parse(value: Any) -> Any:
    """An axis cell as a Python value: JSON text of tables parsed, missing as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _same_options(values: list[Any]) -> set[str]:
    """Options of table values (plugin tables) equal in every row that has a table."""
    tables = [v for v in values if isinstance(v, dict)]
    keys = {k for t in tables for k in t} - {"name"}
    return {k for k in keys if len({_key(t.get(k, "<absent>")) for t in tables}) == 1}


def _value_text(value: Any) -> str:
    if isinstance(value, dict | list):
        return short(value)
    if isinstance(value, float) and value.is_integer():
        return f"{value:g}"
    return str(value)
