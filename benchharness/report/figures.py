"""``bench report --plot DIR``: every figure of a report written as PNG and SVG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from benchharness.errors import BenchError
from benchharness.report.curve_plots import curve_figures
from benchharness.report.curves import curve_summary
from benchharness.report.plots import front_figures, save_figures
from benchharness.store import Store


def write_plots(
    store: Store,
    directory: str | Path,
    *,
    spec: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
) -> list[Path]:
    """Write ``front-<spec>[-quick]`` (one per spec and quick flag) and
    ``curves-<spec>[-quick]-<phase>`` (phases with more than one step) as ``.png`` and
    ``.svg`` into ``directory``; returns the paths written."""
    from benchharness import report

    summary = report.summarize(store, spec=spec, objectives=objectives)
    curves = curve_summary(store, spec=spec)
    try:
        figures = front_figures(summary) + curve_figures(curves, summary)
    except BenchError as error:
        raise BenchError(f"--plot: {error}") from None
    return save_figures(figures, Path(directory))
