"""Readers never stop writers, and one study has one runner: real `bench run` processes
next to a process holding a read-only DuckDB connection, and two runs of one spec at
once."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
from bench_processes import TINY_SPEC, ForkServer, exit_code, text, wait_gone
from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.journal import Journal, journal_path
from benchharness.store import Store


@pytest.fixture
def forkserver(data_dir: Path, tmp_path: Path):
    server = ForkServer(data_dir, tmp_path / "forkserver")
    yield server
    server.close()


def journaled_runs(db: Path) -> list[str]:
    return [
        entry["row"]["job_id"]
        for _end, entry in Journal(journal_path(db)).read()
        if entry["kind"] == "run"
    ]


def test_a_reader_holding_the_database_neither_stops_nor_loses_a_run(
    tmp_path: Path, forkserver: ForkServer, data_dir: Path
) -> None:
    db = tmp_path / "bench.duckdb"
    first = tmp_path / "first.toml"
    first.write_text(TINY_SPEC.format(name="first", seeds="[0]"))
    result = CliRunner().invoke(app, ["run", str(first), "--db", str(db)])
    assert result.exit_code == 0, result.output
    reader = subprocess.Popen(  # a notebook with the database open, read-only
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys
                con = duckdb.connect({str(db)!r}, read_only=True)
                print(con.execute("SELECT count(*) FROM runs").fetchone()[0], flush=True)
                sys.stdin.readline()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert reader.stdout.readline().strip() == "1"
        spec = tmp_path / "study.toml"
        spec.write_text(TINY_SPEC.format(name="study", seeds="[0, 1, 2]"))
        stderr = tmp_path / "run.err"
        pid = forkserver.start(["run", spec, "--db", db], stderr)
        wait_gone(pid)  # longer than the 10 s lock timeout: it waited that long at the end
        log = text(stderr)
        assert exit_code(stderr) == 0, log
        assert "3 completed, 0 failed" in log
        assert f"wait in {journal_path(db)}" in log
        assert len(journaled_runs(db)) == 1 + 3  # every result is on disk
        # `bench report` works meanwhile and shows what the database holds so far
        report = CliRunner().invoke(app, ["report", "--db", str(db), "--format", "csv"])
        assert report.exit_code == 0, report.output
        assert "first" in report.stdout and "study" not in report.stdout
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
    # once the reader has gone, the next command writes what waited, each job once
    runs = Store(db).runs()
    assert sorted(runs["spec_name"]) == ["first", "study", "study", "study"]
    assert runs["job_id"].is_unique and set(runs["status"]) == {"completed"}
    con = duckdb.connect(str(db), read_only=True)
    try:
        per_job = con.execute("SELECT job_id, count(*) FROM curves GROUP BY ALL").fetchall()
    finally:
        con.close()
    assert len(per_job) == 4 and len({n for _job, n in per_job}) == 1


def test_two_runs_of_one_spec_train_each_job_once(tmp_path: Path, forkserver: ForkServer) -> None:
    db = tmp_path / "bench.duckdb"
    spec = tmp_path / "twice.toml"
    spec.write_text(TINY_SPEC.format(name="twice", seeds=list(range(8))))
    logs = [tmp_path / "a.err", tmp_path / "b.err"]
    pids = [forkserver.start(["run", spec, "--db", db], log) for log in logs]
    for pid in pids:
        wait_gone(pid)
    texts = [text(log) for log in logs]
    assert [exit_code(log) for log in logs] == [0, 0], texts
    trained = [len(re.findall(r"\] start [0-9a-f]{16}", t)) for t in texts]
    assert sum(trained) == 8  # no job trained twice, none left out
    assert sorted(journaled_runs(db)) == sorted(set(journaled_runs(db)))
    assert len(journaled_runs(db)) == 8
    for mine, other_pid in ((texts[0], pids[1]), (texts[1], pids[0])):
        if "being run by another `bench run`" in mine:  # says who has them
            assert f"pid {other_pid} on " in mine
    assert any("being run by another `bench run`" in t for t in texts) or 0 in trained
    runs = Store(db).runs()
    assert len(runs) == 8 and runs["job_id"].is_unique
    # a third run finds nothing left to do
    result = CliRunner().invoke(app, ["run", str(spec), "--db", str(db)])
    assert result.exit_code == 0
    assert "8 jobs, 8 already completed, 0 to run" in result.stderr
