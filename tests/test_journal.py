"""The journal beside the database: torn and damaged lines, rebuilding a corrupt or missing
database from it (by itself and with `bench recover`), and per-job leases."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.journal import Journal, journal_path
from benchharness.leases import Leases
from benchharness.records import CurvePoint, RunRecord
from benchharness.store import Store

REPO = Path(__file__).resolve().parents[1]


def record(job_id: str, **overrides) -> RunRecord:
    fields = dict(
        job_id=job_id,
        config_id=f"cfg-{job_id}",
        spec_name="spec-j",
        spec_hash="h",
        quick=False,
        seed=1,
        config={"model": {"name": "mlp", "width": 3}},
        axes={"model.width": 3, "transform": {"name": "dct", "ratio": 0.3}},
        status="completed",
        metrics={"test_accuracy": 0.5, "test_loss": math.nan, "params": 7},
        extra={"greedy.distortion": 1e-3},
        curves=[CurvePoint("train", s, "train_loss", 1 / s) for s in (1, 2, 3)],
        provenance={"hostname": "h1", "plugin_versions": {"a": "1"}},
        started_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        finished_at=datetime(2026, 1, 2, 3, 5, 0, tzinfo=UTC),
    )
    fields.update(overrides)
    return RunRecord(**fields)


def some_results(store: Store) -> None:
    store.save_claims("spec-j", [{"match": {"model.width": 3}, "metric": "test_accuracy",
                                  "value": 0.9}])  # fmt: skip
    store.save(record("a"))
    store.save(record("b", axes={"model.width": "wide", "transform": {"name": "none"}}))
    store.save(record("c", status="failed", error="boom\ntraceback", metrics={}))
    store.save(record("a", status="failed", error="a failed rerun", metrics={}))  # kept


def table(db: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def snapshot(db: Path) -> dict[str, pd.DataFrame]:
    return {
        "runs": table(db, "SELECT * FROM runs ORDER BY job_id"),
        "curves": table(db, "SELECT * FROM curves ORDER BY job_id, phase, name, step"),
        "claims": table(db, "SELECT * FROM claims ORDER BY metric"),
    }


def same(left: dict[str, pd.DataFrame], right: dict[str, pd.DataFrame]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        pd.testing.assert_frame_equal(left[name], right[name], check_like=True)


# ------------------------------------------------------------------- journal


def test_a_torn_last_line_is_skipped_and_the_next_append_starts_afresh(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    ends = [journal.append({"kind": "run", "n": i}) for i in range(3)]
    assert ends == sorted(ends) and ends[-1] == journal.size()
    with open(journal.path, "r+b") as handle:  # a kill in the middle of the last write
        handle.truncate(ends[-1] - 7)
    assert [e["n"] for _, e in journal.read()] == [0, 1]
    assert journal.damaged_lines == 1
    journal.append({"kind": "run", "n": 3})
    assert [e["n"] for _, e in journal.read()] == [0, 1, 3]
    assert [e["n"] for _, e in journal.read(ends[0])] == [1, 3]  # from an entry's end on


def test_a_damaged_line_fails_its_checksum(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    for i in range(3):
        journal.append({"kind": "run", "value": 1000 + i})
    data = journal.path.read_bytes().replace(b"1001", b"1009")
    journal.path.write_bytes(data)
    assert [e["value"] for _, e in journal.read()] == [1000, 1002]
    assert journal.damaged_lines == 1


def test_a_torn_header_starts_the_journal_over(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.path.write_bytes(b'0123456789abcdef {"kind":"hea')  # the creating write, torn
    journal.append({"kind": "run", "n": 1})
    assert journal.header() is not None and journal.header().complete
    assert [e["n"] for _, e in journal.read()] == [1]


# ------------------------------------------------------------------- rebuild


def test_a_rebuilt_database_equals_the_one_written_directly(tmp_path: Path) -> None:
    store = Store(tmp_path / "bench.duckdb")
    some_results(store)
    direct = snapshot(store.path)
    assert direct["runs"].set_index("job_id").loc["a", "status"] == "completed"
    os.remove(store.path)  # the database is gone; the journal is not
    again = Store(store.path)
    assert again.completed_ids(["a", "b", "c"]) == {"a", "b"}
    again.runs()
    same(snapshot(store.path), direct)


def corrupt(db: Path) -> None:
    with open(db, "r+b") as handle:
        handle.seek(12288 + 100)
        handle.write(b"\xde\xad\xbe\xef" * 8)


def test_a_corrupt_database_is_kept_aside_and_rebuilt_by_itself(tmp_path: Path) -> None:
    db = tmp_path / "bench.duckdb"
    some_results(Store(db))
    direct = snapshot(db)
    original = db.read_bytes()
    corrupt(db)
    with pytest.raises(duckdb.Error, match="(?i)corrupt|checksum"):
        duckdb.connect(str(db), read_only=True).close()
    notices: list[str] = []
    store = Store(db, on_notice=notices.append)
    runs = store.runs()  # any command notices, and repairs
    assert sorted(runs["job_id"]) == ["a", "b", "c"]
    same(snapshot(db), direct)
    [notice] = notices
    [aside] = [p for p in tmp_path.iterdir() if ".unreadable-" in p.name]
    assert f"moved it to {aside}" in notice and str(journal_path(db)) in notice
    assert "3 runs" in notice
    assert len(aside.read_bytes()) == len(original)  # kept as it was, not deleted
    assert store.save(record("d")) == "saved"


def test_bench_recover(tmp_path: Path) -> None:
    db = tmp_path / "bench.duckdb"
    some_results(Store(db))
    direct = snapshot(db)
    result = CliRunner().invoke(app, ["recover", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "reads in full" in result.stdout
    corrupt(db)
    result = CliRunner().invoke(app, ["recover", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "could not be read" in result.stdout and "moved it to" in result.stdout
    same(snapshot(db), direct)
    no_journal = CliRunner().invoke(app, ["recover", "--db", str(tmp_path / "other.duckdb")])
    assert no_journal.exit_code == 2
    assert no_journal.stderr.strip().startswith("no journal at ")


def test_results_from_before_the_journal_are_named_when_rebuilding(tmp_path: Path) -> None:
    db = tmp_path / "bench.duckdb"
    Store(db).save(record("old"))
    os.remove(journal_path(db))  # a database from before journals existed
    Store(db).save(record("new"))
    assert not Journal(journal_path(db)).header().complete
    corrupt(db)
    notices: list[str] = []
    assert list(Store(db, on_notice=notices.append).runs()["job_id"]) == ["new"]
    assert "results stored before the journal started" in notices[0]


# -------------------------------------------------------------------- leases


def test_a_job_leased_by_a_live_process_is_not_taken_until_it_dies(tmp_path: Path) -> None:
    db = tmp_path / "bench.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys
                from pathlib import Path
                from benchharness.leases import Leases
                leases = Leases(Path({str(db)!r}))
                print(leases.claim(["a", "b"]), flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "(['a', 'b'], [])"
        with Leases(db) as mine:
            assert mine.claim(["a", "b", "c"]) == (["c"], ["a", "b"])
            [other] = mine.others()
            assert other["pid"] == holder.pid and other["host"] and other["started_at"]
            holder.send_signal(signal.SIGKILL)  # a lease ends with its owner, however it ends
            holder.wait(timeout=30)
            assert mine.claim(["a", "b", "c"]) == (["a", "b", "c"], [])
            assert mine.others() == []  # the dead runner's file is cleaned up
        assert sorted(p.name for p in (tmp_path / "bench.duckdb.leases").iterdir()) == ["jobs.lock"]
    finally:
        holder.kill()
        holder.wait()
