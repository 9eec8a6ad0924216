"""Report output for a real quick run of specs/mnist_width_dct.toml, checked for content
against the runs table (numpy) and the spec: configurations, counts, fronts, claims rows
and verdicts, and the CLI's table/JSON/claims/compare/noise outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from report_study import quick_study_db
from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.report import summarize
from benchharness.report.claims import claims_table
from benchharness.report.stats import verdict
from benchharness.store import Store

CLAIMS = {  # (α, β, metric) → claimed value, from specs/mnist_width_dct.toml
    (1.0, 0.3, "test_accuracy"): 0.9558,
    (0.5, 0.1, "test_accuracy"): 0.4391,
    (0.5, 0.3, "test_accuracy"): 0.946,
    (0.5, 0.5, "test_accuracy"): 0.9707,
    (2.0, 0.5, "test_accuracy"): 0.9717,
    (1.0, 0.3, "train_seconds"): 827.24,
}


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    return quick_study_db(tmp_path_factory, data_dir)


def bench(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_configurations_and_counts(db: Path) -> None:
    df = summarize(Store(db))
    assert len(df) == 10 and df["quick"].all() and set(df["spec_name"]) == {"mnist_width_dct"}
    grid = {(w, r) for w in (0.5, 1.0, 2.0) for r in (0.1, 0.3, 0.5)}
    dct = df[df["transform.ratio"].notna()]
    assert {(w, r) for w, r in zip(dct["model.width"], dct["transform.ratio"], strict=True)} == grid
    (reference,) = df[df["transform.ratio"].isna()].to_dict("records")
    assert json.loads(reference["transform"]) == {"name": "none"}
    # seed 1 ran for α = 0.5 and the reference only
    two = {
        (w, r)
        for w, r, n in zip(df["model.width"], df["transform.ratio"], df["n"], strict=True)
        if n == 2
    }
    assert {w for w, _ in two} == {0.5, 1.0} and len(two) == 4
    assert df["n"].sum() == 14
    runs = Store(db).query("SELECT config_id, test_accuracy FROM runs WHERE status = 'completed'")
    for row in df.itertuples():
        values = runs.loc[runs["config_id"] == row.config_id, "test_accuracy"].to_numpy()
        assert row.test_accuracy_mean == pytest.approx(values.mean())
        if len(values) > 1:
            assert row.test_accuracy_se == pytest.approx(values.std(ddof=1) / math.sqrt(2))
    # default objectives: accuracy vs effective FLOPs and size; the front is non-empty and
    # holds the most accurate configuration
    assert df.attrs["objectives"] == [
        "test_accuracy:max",
        "flops_effective:min",
        "size_bits:min",
    ]
    best = df.loc[df["test_accuracy_mean"].idxmax()]
    assert best["on_front"]


def test_claims_rows_and_verdicts(db: Path) -> None:
    table = claims_table(Store(db))
    assert len(table) == len(CLAIMS)
    runs = Store(db).query(
        """SELECT test_accuracy, train_seconds,
                  CAST(json_extract(config, '$.model.width') AS DOUBLE) AS width,
                  CAST(json_extract(config, '$.transform.ratio') AS DOUBLE) AS ratio
           FROM runs WHERE status = 'completed'"""
    )
    for row in table.itertuples():
        key = (row.match["model.width"], row.match["transform.ratio"], row.metric)
        assert row.claimed == CLAIMS[key]
        mine = runs[(runs["width"] == key[0]) & (runs["ratio"] == key[1])][row.metric]
        values = mine.to_numpy(dtype=float)
        assert row.n == len(values) and row.quick is True
        assert row.mean == pytest.approx(values.mean())
        se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else None
        assert row.verdict == verdict(len(values), values.mean(), se, row.claimed, row.claimed_se)
        if len(values) == 1:
            assert row.verdict == "too few seeds"
        else:  # 1 epoch on 2,000 images is far below every published accuracy
            assert row.verdict == "not reproduced (lower)" and row.z < -2
    verdicts = sorted(table["verdict"])
    assert verdicts.count("too few seeds") == 3 and verdicts.count("not reproduced (lower)") == 3


def test_cli_outputs(db: Path) -> None:
    table = bench("report", "--db", db)
    header = table.splitlines()[0]
    assert "accuracy (%) ↑" in header and "eff. FLOPs" in header and "size" in header
    assert "latency" not in header  # only with --wide
    assert "claims vs measured" in table and "not reproduced (lower)" in table
    assert max(len(line) for line in table.splitlines()) < 200
    assert "params" not in header and "params" in bench("report", "--db", db, "--wide")

    rows = json.loads(bench("report", "--db", db, "--format", "json"))
    (reference,) = [r for r in rows if r["transform.ratio"] is None]
    assert reference["transform"] == {"name": "none"}  # nested, not JSON text

    claims = json.loads(bench("report", "--db", db, "--claims", "--format", "json"))
    assert {c["verdict"] for c in claims} == {"too few seeds", "not reproduced (lower)"}
    assert all(isinstance(c["match"], dict) for c in claims)

    compared = json.loads(
        bench(
            "report",
            "--db",
            db,
            "--format",
            "json",
            "--objectives",
            "accuracy:max",
            "--compare",
            "model.width=0.5,transform.ratio=0.5",
            "model.width=0.5,transform.ratio=0.1",
        )
    )
    (acc,) = compared
    assert acc["method"] == "paired bootstrap" and acc["n_a"] == acc["n_b"] == 2
    assert acc["low"] <= acc["difference"] <= acc["high"] and 0 <= acc["p_a_beats_b"] <= 1

    noisy = json.loads(bench("report", "--db", db, "--noise", "--format", "json"))
    for row in noisy:
        assert 0 <= row["p_front"] <= 1
        assert (row["dominance"] == "front") == row["on_front"]
    again = json.loads(bench("report", "--db", db, "--noise", "--format", "json"))
    assert [r["p_front"] for r in again] == [r["p_front"] for r in noisy]  # seeded


def test_curves_text(db: Path) -> None:
    rows = json.loads(bench("report", "--db", db, "--curves", "--format", "json"))
    accuracy = [r for r in rows if r["name"] == "test_accuracy" and r["phase"] == "train"]
    assert len(accuracy) == 10 and {r["step"] for r in accuracy} == {1}  # one epoch
    assert sum(r["n"] for r in accuracy) == 14
    raw = Store(db).query(
        """SELECT r.config_id, avg(c.value) AS mean FROM curves c JOIN runs r USING (job_id)
           WHERE c.name = 'test_accuracy' AND c.phase = 'train' GROUP BY r.config_id"""
    )
    expected = dict(zip(raw["config_id"], raw["mean"], strict=True))
    for r in accuracy:
        assert r["mean"] == pytest.approx(expected[r["config_id"]])
