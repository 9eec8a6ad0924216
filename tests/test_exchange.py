"""bench export / bench import: round trips through Parquet and CSV, the merge rule by job
id (identical skipped, completed beats failed, conflicts listed and never overwritten),
and imports that go through the journal like `bench run`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.exchange import export, import_paths
from benchharness.store import Store
from tests.test_store import make_record

BENCH = Path(sys.executable).with_name("bench")


def comparable(store: Store) -> pd.DataFrame:
    runs = store.runs().sort_values("job_id").reset_index(drop=True)
    return runs[sorted(runs.columns)]


def all_curves(store: Store) -> list[tuple]:
    return sorted(
        map(tuple, store.query("SELECT * FROM curves ORDER BY ALL").itertuples(index=False))
    )


@pytest.fixture
def source(tmp_path: Path) -> Store:
    store = Store(tmp_path / "source.duckdb")
    store.save(make_record("j1", metrics={"test_accuracy": 0.91, "flops": 10}))
    store.save(make_record("j2", status="failed", error="boom", metrics={}))
    store.save(
        make_record("j3", seed=1, metrics={"test_accuracy": 0.5, "latency_b1_median_ms": 1.25})
    )
    store.save(make_record("k1", spec_name="spec-b", axes={"optimizer.lr": 0.1}))
    store.save_claims(
        "spec-a",
        [
            {
                "match": {"model.width": 64},
                "metric": "test_accuracy",
                "value": 0.9,
                "se": None,
                "source": "paper",
            }
        ],
    )
    return store


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_then_import_reproduces_the_database(source: Store, tmp_path: Path, fmt) -> None:
    counts = export(source, tmp_path / "out", fmt)
    assert counts == {"runs": 4, "curves": 8, "claims": 1}
    target = Store(tmp_path / "target.duckdb")
    report = import_paths(target, [tmp_path / "out"])
    assert (report.imported, report.identical, report.conflicts) == (4, 0, [])
    pd.testing.assert_frame_equal(comparable(target), comparable(source), check_dtype=False)
    assert all_curves(target) == all_curves(source)
    claims = target.query("SELECT spec_name, metric, value, source FROM claims")
    assert claims.values.tolist() == [["spec-a", "test_accuracy", 0.9, "paper"]]
    # importing the same export again changes nothing
    again = import_paths(target, [tmp_path / "out"])
    assert (again.imported, again.identical, again.conflicts) == (0, 4, [])


def test_export_one_spec(source: Store, tmp_path: Path) -> None:
    counts = export(source, tmp_path / "b", "parquet", spec_name="spec-b")
    assert counts == {"runs": 1, "curves": 2, "claims": 0}
    target = Store(tmp_path / "t.duckdb")
    import_paths(target, [tmp_path / "b"])
    assert target.runs()["job_id"].tolist() == ["k1"]


def test_merge_rule_by_job_id(source: Store, tmp_path: Path) -> None:
    here = Store(tmp_path / "here.duckdb")
    here.save(make_record("j1", metrics={"test_accuracy": 0.91, "flops": 10}))  # identical
    here.save(make_record("j2", metrics={"test_accuracy": 0.8}))  # completed; source failed
    here.save(make_record("j3", seed=1, metrics={"test_accuracy": 0.6}))  # different: conflict
    here.save(make_record("j4", status="failed", error="oom", metrics={}))
    report = import_paths(here, [source.path])
    assert report.imported == 1  # k1 only
    assert report.identical == 1
    assert report.kept_completed == 1
    assert [(job, where) for job, where, _ in report.conflicts] == [("j3", str(source.path))]
    assert "test_accuracy 0.6 here vs 0.5" in report.conflicts[0][2]
    runs = here.runs().set_index("job_id")
    assert runs.loc["j2", "status"] == "completed" and runs.loc["j2", "test_accuracy"] == 0.8
    assert runs.loc["j3", "test_accuracy"] == 0.6  # the existing row is kept
    assert set(runs.index) == {"j1", "j2", "j3", "j4", "k1"}

    # the other way round: a completed result replaces a failed one
    back = import_paths(source, [here.path])
    assert back.imported == 2  # j2 (completed beats failed) and j4 (new)
    assert source.runs().set_index("job_id").loc["j2", "status"] == "completed"


def test_imported_rows_are_journaled_first(source: Store, tmp_path: Path) -> None:
    target = Store(tmp_path / "target.duckdb", on_notice=lambda _m: None)
    import_paths(target, [source.path])
    before = comparable(target)
    target.path.unlink()  # the database is lost: the journal alone rebuilds it
    rebuilt = Store(target.path, on_notice=lambda _m: None)
    rebuilt.recover()
    pd.testing.assert_frame_equal(comparable(rebuilt), before)


def test_cli_export_import_and_conflict_exit_code(source: Store, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "csv"
    result = runner.invoke(app, ["export", str(out), "--format", "csv", "--db", str(source.path)])
    assert result.exit_code == 0, result.output
    assert "wrote 4 runs, 8 curve points and 1 claims" in result.output
    other = Store(tmp_path / "other.duckdb")
    other.save(make_record("j1", metrics={"test_accuracy": 0.2}))
    result = runner.invoke(app, ["import", str(out), "--db", str(other.path)])
    assert result.exit_code == 1
    assert "conflict j1" in result.output
    bad = runner.invoke(app, ["export", str(out), "--format", "xlsx", "--db", str(source.path)])
    assert bad.exit_code == 2 and "--format: must be parquet or csv" in bad.output
    missing = runner.invoke(app, ["import", str(tmp_path / "nope"), "--db", str(other.path)])
    assert missing.exit_code == 2 and "no such database or export directory" in missing.output


def test_import_killed_mid_write_loses_nothing(source: Store, tmp_path: Path) -> None:
    """kill -9 while the imported rows are being committed to DuckDB: they are in the
    journal already, so the next command has them all, and a rerun finds them identical."""
    target = tmp_path / "target.duckdb"
    env = dict(os.environ, BENCH_STORE_TEST_PAUSE="60")
    process = subprocess.Popen(
        [str(BENCH), "import", str(source.path), "--db", str(target)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if line.strip() == "store-hook commit":  # inside the transaction
                break
        else:
            pytest.fail("the import never reached its commit")
        process.kill()
    finally:
        process.kill()
        process.wait()
    rebuilt = Store(target, on_notice=lambda _m: None)
    pd.testing.assert_frame_equal(comparable(rebuilt), comparable(source), check_dtype=False)
    again = import_paths(rebuilt, [source.path])
    assert (again.imported, again.identical, again.conflicts) == (0, 4, [])
