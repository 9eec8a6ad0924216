"""Curves as plots: per (spec, quick) group and training phase, one panel per curve
(train loss, test accuracy, LC's μ and ‖w − Δ(Θ)‖), one line per configuration at the
mean over seeds with a shaded band of ± one standard error where n > 1."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from benchharness.report.curves import CURVE_NAMES
from benchharness.report.plots import config_labels, groups, log_axis, slug

BAND_ALPHA = 0.2
_STEP_LABELS = {"lc": "LC step k", "idc": "iDC step k", "dc": "step"}
_DECADE = 10.0
_COLUMNS = 2  # panels per row: keeps every figure about as wide as a page


def curve_figures(curves: pd.DataFrame, summary: pd.DataFrame) -> list[tuple[str, Figure]]:
    """``curves-<spec>[-quick]-<phase>`` figures from a ``curve_summary`` result, labelled
    and coloured by configuration as in ``summary`` (a ``summarize`` result). Phases whose
    curves have a single step (a final evaluation) are left out."""
    axes = list(summary.attrs.get("axes", []))
    out: list[tuple[str, Figure]] = []
    for stem, part in groups(summary):
        labels = config_labels(part, axes)
        colours = {config: _colour(i, len(labels)) for i, config in enumerate(labels)}
        mine = curves[curves["config_id"].isin(labels)]
        if "spec_name" in part.columns and "spec_name" in mine.columns:
            mine = mine[mine["spec_name"] == part["spec_name"].iloc[0]]
        if "quick" in part.columns and "quick" in mine.columns:
            mine = mine[mine["quick"].astype(bool) == bool(part["quick"].iloc[0])]
        for phase, lines in mine.groupby("phase", sort=True):
            if lines.groupby(["config_id", "name"])["step"].nunique().max() < 2:
                continue
            title = f"{stem.replace('-quick', ' (quick)')}: phase {phase}"
            fig = phase_figure(lines, str(phase), labels, colours, title)
            out.append((f"curves-{stem}-{slug(str(phase))}", fig))
    return out


def phase_figure(
    lines: pd.DataFrame,
    phase: str,
    labels: dict[str, str],
    colours: dict[str, str],
    title: str = "",
) -> Figure:
    """One phase's curves: a panel per name in :data:`CURVE_NAMES` order, a line per
    configuration (in ``labels`` order) and a ± SE band where the standard error exists."""
    names = [n for n in CURVE_NAMES if n in set(lines["name"])]
    columns = min(len(names), _COLUMNS)
    rows = math.ceil(len(names) / columns)
    fig = Figure(figsize=(4.3 * columns + 2.6, 3.3 * rows + 0.5), layout="constrained")
    FigureCanvasAgg(fig)
    panels = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in panels[len(names) :]:
        fig.delaxes(ax)
    for ax, name in zip(panels, names, strict=False):
        scale = 100.0 if name == "test_accuracy" else 1.0
        values = lines.loc[lines["name"] == name, "mean"].astype(float)
        for config in (c for c in labels if c in set(lines["config_id"])):
            series = lines[(lines["config_id"] == config) & (lines["name"] == name)]
            series = series.sort_values("step")
            if series.empty:
                continue
            steps = series["step"].to_numpy()
            mean = series["mean"].astype(float).to_numpy() * scale
            se = series["se"].astype(float).to_numpy() * scale
            colour = colours[config]
            ax.plot(steps, mean, color=colour, marker="o", markersize=3, label=labels[config])
            has_se = ~pd.isna(se)
            if has_se.any():
                ax.fill_between(
                    steps, mean - se, mean + se, where=has_se, color=colour,
                    alpha=BAND_ALPHA, linewidth=0, interpolate=False,
                )  # fmt: skip
        if name != "test_accuracy" and _spans_decades(values):
            log_axis(ax, "y")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(_STEP_LABELS.get(phase, "epoch"))
        ax.set_ylabel(CURVE_NAMES[name])
        ax.grid(True, alpha=0.3)
    handles, texts = panels[0].get_legend_handles_labels()
    fig.legend(
        handles, texts, loc="outside right upper", fontsize=7, title="configuration (band: ± 1 SE)"
    )
    if title:
        fig.suptitle(title)
    return fig


def _spans_decades(values: pd.Series) -> bool:
    finite = [float(v) for v in values if math.isfinite(float(v))]
    return bool(finite) and min(finite) > 0 and max(finite) >= _DECADE * min(finite)


def _colour(index: int, count: int) -> str:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    palette = colormaps["tab10" if count <= 10 else "tab20"]
    return to_hex(palette(index % palette.N))
