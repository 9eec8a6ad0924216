"""Reports: mean ± SE over seeds, the Pareto front, claims and rendering, each checked
against an independent computation in Python."""

from __future__ import annotations

import io
import itertools
import json
import math
import random
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchharness.errors import BenchError
from benchharness.records import RunRecord
from benchharness.report import (
    parse_objectives,
    render,
    run_sql,
    summarize,
)
from benchharness.store import Store


def make_record(
    job_id: str,
    config_id: str,
    *,
    spec: str = "spec-a",
    seed: int = 0,
    axes: dict | None = None,
    metrics: dict | None = None,
    status: str = "completed",
    quick: bool = False,
    extra: dict | None = None,
    config: dict | None = None,
) -> RunRecord:
    axes = axes or {}
    if config is None:  # the resolved config holds the axis values at their dotted paths
        config = {"train": {"epochs": 2}}
        for path, value in axes.items():
            node = config
            *parents, leaf = path.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return RunRecord(
        job_id=job_id,
        config_id=config_id,
        spec_name=spec,
        spec_hash="h",
        quick=quick,
        seed=seed,
        config=config,
        axes=axes,
        status=status,  # type: ignore[arg-type]
        error="boom" if status == "failed" else None,
        metrics=metrics or {},
        extra=extra or {},
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "bench.duckdb")


# ---------------------------------------------------------------- aggregation


def test_mean_and_standard_error_match_numpy(store: Store) -> None:
    rng = np.random.default_rng(1)
    expected = {}
    for width in (8, 16, 32, 64):
        config_id = f"w{width}"
        n = int(rng.integers(1, 6))
        acc = rng.uniform(0.8, 0.99, n)
        loss = rng.uniform(0.01, 1.0, n)
        lat = rng.uniform(0.1, 2.0, n)
        for seed in range(n):
            store.save(
                make_record(
                    f"{config_id}-s{seed}",
                    config_id,
                    seed=seed,
                    axes={"model.width": width},
                    metrics={
                        "test_accuracy": acc[seed],
                        "test_loss": loss[seed],
                        "flops": width * 1000,
                        "latency_b1_median_ms": lat[seed],
                    },
                    extra={"prune.sparsity": float(acc[seed] / 2), "tag": "x"},
                )
            )
        if width == 16:  # failed runs are counted, never averaged
            store.save(
                make_record(
                    "w16-bad",
                    config_id,
                    seed=99,
                    axes={"model.width": width},
                    status="failed",
                    metrics={"test_accuracy": 0.0},
                )
            )
        expected[width] = {
            "n": n,
            "test_accuracy": acc,
            "test_loss": loss,
            "latency_b1_median_ms": lat,
            "prune.sparsity": acc / 2,
        }

    df = summarize(store)
    assert list(df["model.width"]) == [8.0, 16.0, 32.0, 64.0]
    assert df.attrs["axes"] == ["model.width"]
    assert list(df["failed"]) == [0, 1, 0, 0]
    assert "tag_mean" not in df  # not numeric
    assert "params_mean" not in df  # never measured
    for _, row in df.iterrows():
        want = expected[int(row["model.width"])]
        assert row["n"] == want["n"]
        for metric in ("test_accuracy", "test_loss", "latency_b1_median_ms", "prune.sparsity"):
            values = want[metric]
            assert row[f"{metric}_mean"] == pytest.approx(np.mean(values), rel=1e-12)
            if len(values) == 1:
                assert pd.isna(row[f"{metric}_se"])
            else:
                se = np.std(values, ddof=1) / math.sqrt(len(values))
                assert row[f"{metric}_se"] == pytest.approx(se, rel=1e-9)
        assert row["flops_mean"] == row["model.width"] * 1000
        assert row["flops_se"] == 0 if want["n"] > 1 else pd.isna(row["flops_se"])


def test_filters_quick_and_spec_and_no_runs(store: Store) -> None:
    store.save(make_record("a", "c1", axes={"x.y": 1}, metrics={"test_accuracy": 0.5}))
    store.save(
        make_record("b", "c1", seed=1, axes={"x.y": 1}, quick=True, metrics={"test_accuracy": 0.1})
    )
    store.save(
        make_record(
            "c", "c2", spec="spec-b", axes={"opt.name": "adam"}, metrics={"test_accuracy": 0.7}
        )
    )
    everything = summarize(store, objectives=["accuracy:max"])
    assert len(everything) == 3  # quick and full runs never share a group
    full = summarize(store, spec="spec-a", include_quick=False, objectives="accuracy:max")
    assert len(full) == 1 and full["test_accuracy_mean"].iloc[0] == 0.5
    assert full.attrs["axes"] == ["x.y"]
    both = summarize(
        store, spec=["spec-a", "spec-b"], include_quick=False, objectives="accuracy:max"
    )
    assert set(both["spec_name"]) == {"spec-a", "spec-b"}
    assert set(both.attrs["axes"]) == {"x.y", "opt.name"}
    assert both.set_index("spec_name").loc["spec-b", "opt.name"] == "adam"
    with pytest.raises(BenchError, match="no runs of spec nope"):
        summarize(store, spec="nope")


def test_config_with_only_failed_runs(store: Store) -> None:
    store.save(make_record("a", "ok", axes={"w": 1}, metrics={"test_accuracy": 0.9, "flops": 5}))
    store.save(make_record("b", "bad", axes={"w": 2}, status="failed"))
    df = summarize(store).set_index("config_id")
    assert df.loc["bad", "n"] == 0 and df.loc["bad", "failed"] == 1
    assert pd.isna(df.loc["bad", "test_accuracy_mean"])
    assert not df.loc["bad", "on_front"] and df.loc["ok", "on_front"]
    assert list(summarize(store, pareto=True)["config_id"]) == ["ok"]


# -------------------------------------------------------------------- objectives


def test_objective_parsing() -> None:
    parsed = parse_objectives("accuracy:max, size:min,latency_b1_p90_ms:min")
    assert [(o.metric, o.maximize) for o in parsed] == [
        ("test_accuracy", True),
        ("size_bits", False),
        ("latency_b1_p90_ms", False),
    ]
    assert [str(o) for o in parse_objectives(None)] == [
        "test_accuracy:max",
        "flops_effective:min",
        "size_bits:min",
    ]
    for alias, metric in [
        ("loss", "test_loss"),
        ("bits", "size_bits"),
        ("ratio", "compression_ratio"),
        ("latency", "latency_b1_median_ms"),
        ("time", "train_seconds"),
        ("params", "params"),
    ]:
        assert parse_objectives([f"{alias}:min"])[0].metric == metric
    with pytest.raises(BenchError) as error:
        parse_objectives(["acuracy:max", "flops:lowest"])
    lines = str(error.value).splitlines()
    assert len(lines) == 2
    assert "unknown metric 'acuracy'" in lines[0]
    assert "accuracy" in lines[0] and "test_accuracy" in lines[0] and "size_bits" in lines[0]
    assert "max or min" in lines[1]
    with pytest.raises(BenchError, match="extra_metric"):
        parse_objectives(["nope:max"], extra_metrics=["extra_metric"])
    assert parse_objectives(["sparsity:max"], extra_metrics=["sparsity"])[0].metric == "sparsity"


def _dominates(b, a, maximize) -> bool:
    at_least = all(
        (bv >= av) if up else (bv <= av) for bv, av, up in zip(b, a, maximize, strict=True)
    )
    strictly = any(
        (bv > av) if up else (bv < av) for bv, av, up in zip(b, a, maximize, strict=True)
    )
    return at_least and strictly


def test_pareto_front_matches_brute_force(store: Store) -> None:
    rnd = random.Random(7)
    points = {}
    for i in range(40):  # small integer grids make ties and duplicates common
        values = (rnd.randint(0, 6) / 10, rnd.randint(1, 6) * 1000, rnd.randint(1, 5) * 8192)
        if i in (5, 6):
            values = (0.99, 500, 8192)  # an exact duplicate pair: both on every front
        points[f"c{i:02d}"] = values
        store.save(
            make_record(
                f"j{i}",
                f"c{i:02d}",
                axes={"i": i},
                metrics={"test_accuracy": values[0], "flops": values[1], "size_bits": values[2]},
            )
        )
    metrics = ("test_accuracy", "flops", "size_bits")
    cases = [
        ["accuracy:max", "flops:min"],
        ["accuracy:min", "flops:min"],
        ["flops:max", "accuracy:max"],
        ["accuracy:max", "flops:min", "size:min"],
        ["size:max", "flops:max", "accuracy:min"],
        ["size:min"],
    ]
    for objectives in cases:
        parsed = parse_objectives(objectives)
        index = [metrics.index(o.metric) for o in parsed]
        maximize = [o.maximize for o in parsed]
        project = {cid: tuple(v[k] for k in index) for cid, v in points.items()}
        expected = {
            cid
            for cid, p in project.items()
            if not any(_dominates(q, p, maximize) for other, q in project.items() if other != cid)
        }
        df = summarize(store, objectives=objectives)
        assert set(df.loc[df["on_front"], "config_id"]) == expected, objectives
        front = summarize(store, objectives=objectives, pareto=True)
        assert set(front["config_id"]) == expected and front["on_front"].all()
        first = front[f"{parsed[0].metric}_mean"].tolist()
        assert first == sorted(first, reverse=parsed[0].maximize), objectives
    assert {"c05", "c06"} <= set(summarize(store, pareto=True)["config_id"])


def test_front_is_per_spec(store: Store) -> None:
    store.save(make_record("a", "a", spec="small", metrics={"test_accuracy": 0.5, "flops": 10}))
    store.save(make_record("b", "b", spec="small", metrics={"test_accuracy": 0.4, "flops": 20}))
    store.save(make_record("c", "c", spec="big", metrics={"test_accuracy": 0.9, "flops": 1}))
    df = summarize(store).set_index("config_id")
    assert df.loc["a", "on_front"] and df.loc["c", "on_front"] and not df.loc["b", "on_front"]


def test_pareto_needs_values_for_each_objective(store: Store) -> None:
    store.save(make_record("a", "a", metrics={"test_accuracy": 0.5}))
    both = "accuracy:max,flops:min"
    assert not summarize(store, objectives=both)["on_front"].any()  # no flops: nobody placed
    with pytest.raises(BenchError, match="flops:min has no values"):
        summarize(store, objectives=both, pareto=True)
    # the default objectives keep only those the runs measured
    default = summarize(store, pareto=True)
    assert default.attrs["objectives"] == ["test_accuracy:max"] and default["on_front"].all()
    assert summarize(store, objectives="accuracy:max", pareto=True)["on_front"].all()


# -------------------------------------------------------------------- claims


def test_claims_match_by_dotted_path_subset(store: Store) -> None:
    for width, bits in itertools.product((16, 32), (2, 4)):
        store.save(
            make_record(
                f"w{width}b{bits}",
                f"w{width}b{bits}",
                axes={"model.width": width, "quant.bits": bits, "quant.method": "uniform"},
                metrics={"test_accuracy": 0.9, "flops": width},
            )
        )
    store.save_claims(
        "spec-a",
        [
            # float 32.0 must match the integer 32 in the config
            {
                "match": {"model.width": 32.0},
                "metric": "accuracy",
                "value": 0.95,
                "se": 0.01,
                "source": "paper, table 2",
            },
            # more specific: wins over the claim above for w32b2
            {
                "match": {"model.width": 32, "quant.bits": 2, "quant.method": "uniform"},
                "metric": "test_accuracy",
                "value": 0.91,
                "se": None,
                "source": None,
            },
            {
                "match": {"quant.method": "log"},
                "metric": "accuracy",
                "value": 0.1,
                "se": None,
                "source": None,
            },
            {
                "match": {"no.such.key": 1},
                "metric": "accuracy",
                "value": 0.2,
                "se": None,
                "source": None,
            },
            {"match": {}, "metric": "flops", "value": 1e6, "se": None, "source": "everyone"},
            {
                "match": {"quant.method": "uniform", "model.width": 16},
                "metric": "size",
                "value": 100.0,
                "se": None,
                "source": None,
            },
            {
                "match": {"quant.method": "uniform", "quant.bits": "2"},
                "metric": "latency",
                "value": 1.0,
                "se": None,
                "source": None,
            },  # "2" is a string: no match
        ],
    )
    store.save_claims(
        "spec-b",
        [
            {"match": {}, "metric": "loss", "value": 9.0, "se": None, "source": None},
        ],
    )
    df = summarize(store).set_index("config_id")
    assert "claimed_test_loss" not in df  # other spec's claim
    assert df.loc["w32b4", "claimed_test_accuracy"] == 0.95
    assert df.loc["w32b4", "claimed_test_accuracy_se"] == 0.01
    assert df.loc["w32b2", "claimed_test_accuracy"] == 0.91
    assert pd.isna(df.loc["w32b2", "claimed_test_accuracy_se"])
    assert pd.isna(df.loc["w16b2", "claimed_test_accuracy"])
    assert pd.isna(df.loc["w16b4", "claimed_test_accuracy"])
    assert (df["claimed_flops"] == 1e6).all()
    assert df["claimed_size_bits"].to_dict() == pytest.approx(
        {"w16b2": 100.0, "w16b4": 100.0, "w32b2": math.nan, "w32b4": math.nan}, nan_ok=True
    )
    assert df["claimed_latency_b1_median_ms"].isna().all()


# -------------------------------------------------------------------- render


@pytest.fixture
def summary(store: Store) -> pd.DataFrame:
    for width in (16, 32):
        for seed in range(2 if width == 16 else 1):
            store.save(
                make_record(
                    f"w{width}-{seed}",
                    f"w{width}",
                    seed=seed,
                    axes={"model.width": width, "opt.name": "sgd"},
                    metrics={
                        "test_accuracy": 0.9234 + seed * 0.01,
                        "flops": width * 100_000,
                        "size_bits": width * 8192,
                        "latency_b1_median_ms": 0.25,
                        "test_loss": float("nan") if width == 32 else 0.3,
                    },
                )
            )
    store.save_claims(
        "spec-a",
        [
            {
                "match": {"model.width": 16},
                "metric": "accuracy",
                "value": 0.95,
                "se": 0.002,
                "source": "paper",
            }
        ],
    )
    return summarize(store)


def _no_nan(token: str):
    raise AssertionError(f"JSON contains {token}")


def test_render_json(summary: pd.DataFrame) -> None:
    rows = json.loads(render(summary, "json"), parse_constant=_no_nan)
    assert [r["model.width"] for r in rows] == [16, 32]
    first, second = rows
    assert first["opt.name"] == "sgd" and first["n"] == 2 and second["n"] == 1
    assert first["test_accuracy_mean"] == pytest.approx(0.9284)
    assert first["test_accuracy_se"] == pytest.approx(0.005)
    assert second["test_accuracy_se"] is None  # n = 1
    assert second["test_loss_mean"] is None  # NaN becomes null
    assert first["claimed_test_accuracy"] == 0.95 and second["claimed_test_accuracy"] is None
    assert isinstance(first["on_front"], bool)


def test_render_csv(summary: pd.DataFrame) -> None:
    back = pd.read_csv(io.StringIO(render(summary, "csv")))
    assert list(back.columns) == list(summary.columns)
    assert back["test_accuracy_mean"].tolist() == pytest.approx(
        summary["test_accuracy_mean"].tolist()
    )


def test_render_table_and_markdown(summary: pd.DataFrame) -> None:
    # by default: axes, n, accuracy, the objectives (no effective FLOPs measured here:
    # accuracy and size) and the claims of the columns shown; the rest with wide
    narrow = render(summary, "table").splitlines()[0]
    for label in ("model.width", "opt.name", "n", "accuracy (%) ↑", "claimed accuracy (%)"):
        assert label in narrow, label
    assert "size (KiB) ↓" in narrow
    assert "FLOPs" not in narrow and "latency" not in narrow
    table = render(summary, "table", wide=True)
    lines = table.splitlines()
    header = lines[0]
    for label in (
        "model.width",
        "opt.name",
        "n",
        "accuracy (%) ↑",
        "claimed accuracy (%)",
        "FLOPs (M)",
        "size (KiB)",
        "latency b1 median (ms)",
    ):
        assert label in header, label
    assert header.index("accuracy (%)") < header.index("claimed accuracy (%)")
    assert "config_id" not in header and "spec" not in header.split()  # one spec: no column
    row16 = next(line for line in lines[2:] if " 16 " in line)
    assert "92.84 ± 0.50" in row16 and "95.00 ± 0.20" in row16
    assert "1.600 ± 0.000" in row16 and "16.00 ± 0.00" in row16
    row32 = next(line for line in lines[2:] if " 32 " in line)
    assert re.search(r" 92\.34 (?!±)", row32)  # n = 1: no standard error
    front_rows = [line for line in lines[2:] if line.lstrip().startswith("*")]
    assert len(front_rows) == int(summary["on_front"].sum())

    markdown = render(summary, "markdown")
    md_lines = markdown.splitlines()
    assert md_lines[0].startswith("|") and "accuracy (%)" in md_lines[0]
    assert set(md_lines[1]) <= set("|-: ")
    assert len(md_lines) == 2 + len(summary)


def test_render_unknown_format_and_sql(store: Store, summary: pd.DataFrame) -> None:
    with pytest.raises(BenchError, match="unknown report format 'xml'; allowed: table, csv"):
        render(summary, "xml")
    out = run_sql(store, "SELECT job_id, test_accuracy FROM runs ORDER BY job_id", "json")
    assert [r["job_id"] for r in json.loads(out)] == ["w16-0", "w16-1", "w32-0"]
    table = run_sql(store, "SELECT count(*) AS runs FROM runs")
    assert table.split() == ["runs", "─" * len(table.splitlines()[1].strip()), "3"]
    with pytest.raises(BenchError) as error:
        run_sql(store, "DELETE FROM runs")
    assert "\n" not in str(error.value) and "read-only" in str(error.value)


def test_table_fits_the_width(summary: pd.DataFrame) -> None:
    full = render(summary, "table")
    narrow = render(summary, "table", width=60)
    lines = narrow.splitlines()
    assert lines[-1].endswith("more columns: --wide)") or lines[-1].endswith("column: --wide)")
    assert all(len(line) <= 60 for line in lines[:-1])
    dropped = int(lines[-1].strip("(").split()[0])
    assert len(full.splitlines()[0].split("   ")) > len(lines[0].split("   "))
    assert dropped >= 1 and "model.width" in lines[0]  # the axes stay, from the left
    assert render(summary, "table", width=10_000) == full
    assert render(summary, "table", wide=True, width=60) == render(summary, "table", wide=True)


def test_realised_and_simulated_savings_are_shown(store: Store) -> None:
    for cid, ratio, realised in [("dense", 1.0, True), ("masked", 4.0, False), ("csr", 3.0, True)]:
        store.save(
            make_record(
                cid,
                cid,
                axes={"c": cid},
                metrics={
                    "test_accuracy": 0.9,
                    "compression_ratio": ratio,
                    "compression_realised": realised,
                },
            )
        )
    df = summarize(store)
    assert dict(zip(df["config_id"], df["realised"], strict=True)) == {
        "csr": True,
        "dense": True,
        "masked": False,
    }
    lines = render(df, "table").splitlines()
    assert "saving" in lines[0]
    cells = {name: next(row for row in lines[2:] if name in row.split()) for name in df["c"]}
    assert "realised" in cells["csr"] and "simulated" in cells["masked"]
    assert "realised" not in cells["dense"] and "simulated" not in cells["dense"]


def test_replicate_axes_are_grouped_like_seeds(store: Store) -> None:
    values = {}
    for w in (1, 2):
        for draw in range(3):
            for seed in range(2):
                accuracy = 0.5 + 0.1 * w + 0.01 * draw + 0.001 * seed
                values.setdefault(w, []).append(accuracy)
                store.save(
                    make_record(
                        f"w{w}-d{draw}-s{seed}",
                        f"w{w}-d{draw}",
                        seed=seed,
                        axes={"w": w, "compressor.draw": draw},
                        metrics={"test_accuracy": accuracy},
                    )
                )
    assert len(summarize(store)) == 6
    df = summarize(store, replicate_axes=["compressor.draw"])
    assert list(df["w"]) == [1, 2] and list(df["n"]) == [6, 6]
    assert "compressor.draw" not in df.columns and df.attrs["axes"] == ["w"]
    assert list(df["config_id"]) == ["w1-d0", "w2-d0"]
    for w, row in zip((1, 2), df.itertuples(), strict=True):
        assert row.test_accuracy_mean == pytest.approx(np.mean(values[w]))
        assert row.test_accuracy_se == pytest.approx(np.std(values[w], ddof=1) / math.sqrt(6))
    with pytest.raises(BenchError, match="--replicate-axes: no axis draw"):
        summarize(store, replicate_axes=["draw"])
