"""Report plots: the front with ± SE error bars and its marked, connected front points; the
curves with ± SE bands; `bench report --plot`. Checked on the matplotlib objects against
hand-computed values and on a real (tiny) LC study, not just on files existing."""

from __future__ import annotations

import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from PIL import Image
from report_studies import lc_study
from report_study import quick_study_db
from typer.testing import CliRunner

from benchharness import report
from benchharness.cli import app
from benchharness.errors import BenchError
from benchharness.report.curve_plots import curve_figures
from benchharness.report.curves import CURVE_NAMES, curve_summary
from benchharness.report.plots import FRONT_COLOR, config_labels, front_figure, front_figures
from benchharness.store import Store


@pytest.fixture(scope="session")
def lc_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lc_study(tmp_path_factory.getbasetemp())


def _summary(rows: list[dict], objectives: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    df.attrs = {"axes": ["model.width"], "objectives": objectives}
    return df


# Four configurations; by hand: A (90 %, 1 MFLOP) dominates C and D, B (95 %, 10 MFLOP)
# dominates D, so the front is {A, B}. C has one seed (no SE).
FOUR = [
    dict(config_id="A", spec_name="s", quick=False, **{"model.width": 0.5}, n=3,
         test_accuracy_mean=0.90, test_accuracy_se=0.01, flops_mean=1e6, flops_se=0.0,
         on_front=True),
    dict(config_id="B", spec_name="s", quick=False, **{"model.width": 2.0}, n=3,
         test_accuracy_mean=0.95, test_accuracy_se=0.005, flops_mean=1e7, flops_se=2e5,
         on_front=True),
    dict(config_id="C", spec_name="s", quick=False, **{"model.width": 1.0}, n=1,
         test_accuracy_mean=0.85, test_accuracy_se=None, flops_mean=5e6, flops_se=None,
         on_front=False),
    dict(config_id="D", spec_name="s", quick=False, **{"model.width": 4.0}, n=2,
         test_accuracy_mean=0.80, test_accuracy_se=0.02, flops_mean=2e7, flops_se=1e6,
         on_front=False),
]  # fmt: skip


def _errorbars(ax) -> list[ErrorbarContainer]:
    return [c for c in ax.containers if isinstance(c, ErrorbarContainer)]


def _front_line(ax):
    return [line for line in ax.get_lines() if to_hex(line.get_color()) == FRONT_COLOR]


def test_front_figure_marks_and_connects_the_front_with_se_bars_on_both_axes() -> None:
    fig = front_figure(_summary(FOUR, ["test_accuracy:max", "flops:min"]))
    (ax,) = fig.axes
    (bars,) = _errorbars(ax)
    x_bars, y_bars = [c for c in bars.lines[2] if isinstance(c, LineCollection)]
    # n > 1 only (A, B, D): one bar each, ± 1 SE, accuracy in percent
    y_segments = sorted(tuple(map(tuple, s)) for s in y_bars.get_segments())
    expected_y = sorted(
        ((x, 100 * (m - se)), (x, 100 * (m + se)))
        for x, m, se in ((1e6, 0.90, 0.01), (1e7, 0.95, 0.005), (2e7, 0.80, 0.02))
    )
    assert np.allclose(y_segments, expected_y)
    x_segments = sorted(tuple(map(tuple, s)) for s in x_bars.get_segments())
    expected_x = sorted(
        ((x - se, 100 * m), (x + se, 100 * m))
        for x, m, se in ((1e6, 0.90, 0.0), (1e7, 0.95, 2e5), (2e7, 0.80, 1e6))
    )
    assert np.allclose(x_segments, expected_x)

    (front,) = _front_line(ax)
    assert list(front.get_xdata()) == [1e6, 1e7]  # joined in order of FLOPs
    assert np.allclose(front.get_ydata(), [90.0, 95.0])
    (dominated,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert sorted(map(tuple, dominated.get_offsets())) == [(5e6, 85.0), (2e7, 80.0)]

    assert [t.get_text() for t in ax.texts] == ["1", "2", "3", "4"]
    assert ax.get_xscale() == "log"  # 1e6 .. 2e7 spans decades
    assert ax.get_yscale() == "linear"
    assert ax.get_ylabel() == "test accuracy (%)"
    assert "FLOPs" in ax.get_xlabel()
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert key == ["1  width=0.5", "2  width=2", "3  width=1", "4  width=4"]


def test_front_figure_one_panel_per_cost_and_linear_axes_within_a_decade() -> None:
    rows = [
        {**r, "size_bits_mean": bits, "size_bits_se": None, "flops_mean": r["flops_mean"] / 5}
        for r, bits in zip(FOUR, [8192 * 3, 8192 * 4, 8192 * 5, 8192 * 6], strict=True)
    ]
    fig = front_figure(_summary(rows, ["test_accuracy:max", "flops:min", "size_bits:min"]))
    flops_ax, size_ax = fig.axes
    assert flops_ax.get_xscale() == "log"  # 2e5 .. 4e6
    assert size_ax.get_xscale() == "linear"  # 3 .. 6 KiB
    assert size_ax.get_xlabel() == "compressed size (KiB)"
    (front,) = _front_line(size_ax)
    assert list(front.get_xdata()) == [3.0, 4.0]


def test_front_needs_two_objectives() -> None:
    with pytest.raises(BenchError, match="at least two objectives"):
        front_figure(_summary(FOUR, ["test_accuracy:max"]))


def test_config_labels_keep_only_what_differs() -> None:
    rows = pd.DataFrame(
        {
            "config_id": ["a", "b", "c"],
            "optimizer": [
                '{"name":"lc","lr":0.1,"mu0":0.001}',
                '{"name":"lc","lr":0.1,"mu0":0.01}',
                '{"name":"idc","lr":0.1}',
            ],
            "compressor": ['{"name":"quantize","k":2}'] * 3,
            "model.width": [1.0, 1.0, float("nan")],
            "other.width": [0.5, 2.0, 2.0],
        }
    )
    labels = config_labels(rows, ["optimizer", "compressor", "model.width", "other.width"])
    assert labels == {
        "a": "optimizer=lc(mu0=0.001), model.width=1, other.width=0.5",
        "b": "optimizer=lc(mu0=0.01), model.width=1, other.width=2",
        "c": "optimizer=idc, other.width=2",
    }


# ------------------------------------------------------------------ real study


def test_curve_summary_is_mean_and_se_over_seeds(lc_db: Path) -> None:
    store = Store(lc_db)
    runs = store.runs()
    raw = pd.concat(
        [store.curves(job).assign(config_id=config) for job, config in
         zip(runs["job_id"], runs["config_id"], strict=True)]
    )  # fmt: skip
    raw = raw[raw["name"].isin(["train_loss", "test_accuracy", "mu", "constraint_norm"])]
    grouped = raw.groupby(["config_id", "phase", "name", "step"])["value"]
    expected = pd.DataFrame(
        {"mean": grouped.mean(), "se": grouped.std(ddof=1) / np.sqrt(grouped.count()),
         "n": grouped.count()}
    ).reset_index()  # fmt: skip
    got = curve_summary(store).drop(columns=["spec_name", "quick"])
    merged = expected.merge(got, on=["config_id", "phase", "name", "step"], suffixes=("", "_sql"))
    assert len(merged) == len(expected) == len(got) > 0
    assert (merged["n"] == 2).all() and (merged["n_sql"] == 2).all()
    assert np.allclose(merged["mean"], merged["mean_sql"])
    assert np.allclose(merged["se"], merged["se_sql"])
    assert curve_summary(store, spec="report_lc_digits").equals(curve_summary(store))
    assert curve_summary(store, spec="another_spec").empty
    assert curve_summary(store, include_quick=False).equals(curve_summary(store))


def test_curve_figures_lines_and_se_bands_per_configuration(lc_db: Path) -> None:
    store = Store(lc_db)
    summary = report.summarize(store)
    curves = curve_summary(store)
    figures = dict(curve_figures(curves, summary))
    stem = "curves-report_lc_digits"
    # single-step phases (reference_eval, dc) are left out
    assert set(figures) == {f"{stem}-{p}" for p in ("idc", "idc_train", "lc", "lc_l",
                                                    "reference_train")}  # fmt: skip
    lc_fig = figures[f"{stem}-lc"]
    assert [ax.get_ylabel() for ax in lc_fig.axes] == [
        "train loss", "test accuracy (%)", "μ (penalty weight)", "‖w − Δ(Θ)‖"
    ]  # fmt: skip
    lc_config = summary.loc[summary["optimizer"].str.contains('"lc"'), "config_id"].item()
    for ax, name in zip(lc_fig.axes, ["train_loss", "test_accuracy", "mu", "constraint_norm"],
                        strict=True):  # fmt: skip
        ref = curves[(curves["phase"] == "lc") & (curves["name"] == name)]
        assert set(ref["config_id"]) == {lc_config}  # only LC has an lc phase
        scale = 100 if name == "test_accuracy" else 1
        (line,) = ax.get_lines()
        assert list(line.get_xdata()) == list(ref["step"])
        assert np.allclose(line.get_ydata(), ref["mean"] * scale)
        (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        assert math.isclose(ys.min(), ((ref["mean"] - ref["se"]) * scale).min(), rel_tol=1e-9)
        assert math.isclose(ys.max(), ((ref["mean"] + ref["se"]) * scale).max(), rel_tol=1e-9)
    # every panel: one line per configuration with that curve, a band where n > 1
    for stem_phase, fig in figures.items():
        phase = stem_phase[len(stem) + 1 :]
        for ax in fig.axes:
            name = {v: k for k, v in CURVE_NAMES.items()}[ax.get_ylabel()]
            ref = curves[(curves["phase"] == phase) & (curves["name"] == name)]
            assert len(ax.get_lines()) == ref["config_id"].nunique() >= 1
            with_se = ref.loc[ref["se"].notna(), "config_id"].nunique()
            assert len([c for c in ax.collections if isinstance(c, PolyCollection)]) == with_se


def test_front_on_the_real_study_has_a_point_and_bars_per_configuration(lc_db: Path) -> None:
    summary = report.summarize(Store(lc_db), objectives="accuracy:max,size:min")
    (ax,) = front_figure(summary).axes
    (bars,) = _errorbars(ax)
    assert len(bars.lines[2][1].get_segments()) == len(summary) == 2  # n = 2 each
    (front,) = _front_line(ax)
    assert len(front.get_xdata()) == int(summary["on_front"].sum()) >= 1
    assert len(ax.texts) == 2


def test_cli_plot_writes_png_and_svg(lc_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "plots"
    result = CliRunner().invoke(app, ["report", "--db", str(lc_db), "--plot", str(out)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert "front-report_lc_digits.png" in names and "front-report_lc_digits.svg" in names
    assert "curves-report_lc_digits-lc.png" in names
    assert len(names) == 2 * 6  # front + 5 curve phases, two formats each
    assert result.output.count("wrote ") == len(names)
    with Image.open(out / "front-report_lc_digits.png") as image:
        assert image.format == "PNG" and image.width > 400 and image.height > 300
    root = ET.parse(out / "curves-report_lc_digits-lc.svg").getroot()
    assert root.tag.endswith("svg")


def test_cli_plot_with_one_objective_is_a_one_line_error(lc_db: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["report", "--db", str(lc_db), "--plot", str(tmp_path), "--objectives", "accuracy:max"]
    )
    assert result.exit_code == 2
    assert "--plot: a front plot needs at least two objectives" in result.output
    assert "Traceback" not in result.output


def test_bench_startup_does_not_import_matplotlib() -> None:
    code = "import sys, benchharness.cli, benchharness.report; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------- the shared quick mnist study


@pytest.fixture(scope="session")
def quick_db(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return quick_study_db(tmp_path_factory, data_dir)


def test_plots_of_the_quick_mnist_study(quick_db: Path) -> None:
    store = Store(quick_db)
    summary = report.summarize(store, spec="mnist_width_dct")
    # the study: 3 widths × 3 ratios + the reference, seed 0; seed 1 of width 0.5 (3
    # configurations) and of the reference
    assert len(summary) == 10
    twice = summary["n"] == 2
    assert twice.sum() == 4 and (summary.loc[~twice, "n"] == 1).all()
    figures = dict(front_figures(summary))
    assert list(figures) == ["front-mnist_width_dct-quick"]
    fig = figures["front-mnist_width_dct-quick"]
    costs = [o.rpartition(":")[0] for o in summary.attrs["objectives"][1:]]
    assert len(fig.axes) == len(costs) >= 1
    front = summary["on_front"].astype(bool)
    for ax, cost in zip(fig.axes, costs, strict=True):
        (bars,) = _errorbars(ax)  # error bars for the n = 2 configurations only
        y_bars = bars.lines[2][1].get_segments()
        assert len(y_bars) == 4
        expected = sorted(100 * summary.loc[twice, "test_accuracy_mean"])
        assert np.allclose(sorted(s[:, 1].mean() for s in y_bars), expected)
        (line,) = _front_line(ax)
        assert len(line.get_xdata()) == front.sum() >= 1
        (dominated,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert len(dominated.get_offsets()) == (~front).sum()
        assert [t.get_text() for t in ax.texts] == [str(i) for i in range(1, 11)]
        assert ax.get_ylabel() == "test accuracy (%)" and ax.get_xlabel() != cost
    key = {t.get_text().split("  ", 1)[1] for t in fig.legends[0].get_texts()}
    widths_ratios = {
        f"width={w}, ratio={r}" for w in ("0.5", "1", "2") for r in ("0.1", "0.3", "0.5")
    }
    assert key == widths_ratios | {"width=1, transform=none"}
    curves = curve_summary(store, spec="mnist_width_dct")
    assert curves["step"].max() == 1  # one epoch: a curve is a single point ...
    assert curve_figures(curves, summary) == []  # ... and single-step phases are left out
