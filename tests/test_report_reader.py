"""One read connection per report (``Store.reader``), and the summary query without
claims against the full one with claims."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchharness.errors import BenchError
from benchharness.report import aggregate, summarize
from benchharness.store import Store
from benchharness.store_rows import run_entry
from tests.test_report import make_record


def _fill(store: Store) -> None:
    for c in range(12):
        for seed in range(3):
            store.save(
                make_record(
                    f"c{c}-s{seed}",
                    f"c{c:02d}",
                    seed=seed,
                    axes={"model.width": c},
                    metrics={
                        "test_accuracy": 0.5 + ((c * 7 + seed) % 11) / 40,
                        "flops": 1000 + (c * 5) % 9 * 100,
                        "size_bits": 64 * (1 + (c * 3) % 7),
                    },
                )
            )


def test_reader_runs_several_queries_read_only(tmp_path: Path) -> None:
    store = Store(tmp_path / "bench.duckdb")
    _fill(store)
    with store.reader() as db:
        assert int(db.query("SELECT count(*) AS n FROM runs")["n"].iloc[0]) == 36
        ids = db.query("SELECT DISTINCT config_id FROM runs WHERE seed = ?", [2])
        assert sorted(ids["config_id"]) == [f"c{c:02d}" for c in range(12)]
        with pytest.raises(BenchError, match="SQL error"):
            db.query("DELETE FROM runs")
    assert len(store.runs()) == 36  # nothing was deleted


def test_reader_brings_waiting_journal_entries_in_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "bench.duckdb")
    _fill(store)
    store._append(run_entry(make_record("late", "c99", metrics={"test_accuracy": 0.1})))
    with Store(store.path).reader() as db:  # a new process's first read
        row = db.query("SELECT test_accuracy FROM runs WHERE job_id = 'late'")
    assert list(row["test_accuracy"]) == [0.1]


@pytest.mark.parametrize("pareto", [False, True])
@pytest.mark.parametrize(
    "objectives", ["accuracy:max,flops:min", "accuracy:max,flops:min,size:min"]
)
def test_summary_without_claims_matches_the_query_with_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, objectives: str, pareto: bool
) -> None:
    store = Store(tmp_path / "bench.duckdb")
    _fill(store)
    fast = summarize(store, objectives=objectives, pareto=pareto)
    assert fast["on_front"].any()

    real = aggregate.runs_and_claim_metrics

    def with_a_claimed_metric(db, where, params):  # no claim exists: all claimed_ NULL
        count, _ = real(db, where, params)
        return count, {"test_accuracy": ["accuracy"]}

    monkeypatch.setattr(aggregate, "runs_and_claim_metrics", with_a_claimed_metric)
    full = summarize(store, objectives=objectives, pareto=pareto)
    claimed = [c for c in full.columns if c.startswith("claimed_")]
    assert claimed and full[claimed].isna().all().all()
    pd.testing.assert_frame_equal(fast, full.drop(columns=claimed))
