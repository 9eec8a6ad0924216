"""`bench report --sql` is a sandbox: it reads the results and nothing else.

Each escape the issue found (writing files, reading files, listing directories, attaching
databases, installing extensions, several statements) is tried for real through the CLI
against a real DuckDB file: one line, exit 2, and no file written or read.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner, Result

from benchharness.cli import app
from benchharness.errors import BenchError
from benchharness.records import RunRecord
from benchharness.sql_sandbox import run_sandboxed
from benchharness.store import Store

SECRET = "top-secret-line-4711"


def bench(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("bench crashed") from result.exception
    return result


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "bench.duckdb"
    Store(path).save(
        RunRecord(
            job_id="j1",
            config_id="c1",
            spec_name="s",
            spec_hash="h",
            quick=False,
            seed=0,
            config={},
            axes={},
            status="completed",
            metrics={"test_accuracy": 0.5},
        )
    )
    (tmp_path / "secret.csv").write_text(f"a\n{SECRET}\n")
    return path


def escapes(tmp: Path) -> dict[str, tuple[str, Path | None]]:
    """name → (SQL, a path that must not exist afterwards, or None)."""
    return {
        "copy to": (f"COPY runs TO '{tmp / 'out.csv'}'", tmp / "out.csv"),
        "copy select to": (f"COPY (SELECT 1) TO '{tmp / 'sel.csv'}'", tmp / "sel.csv"),
        "export database": (f"EXPORT DATABASE '{tmp / 'exported'}'", tmp / "exported"),
        "read_csv": (f"SELECT * FROM read_csv('{tmp / 'secret.csv'}')", None),
        "read_text": (f"SELECT * FROM read_text('{tmp / 'secret.csv'}')", None),
        "replacement scan": (f"SELECT * FROM '{tmp / 'secret.csv'}'", None),
        "glob": (f"SELECT * FROM glob('{tmp}/*')", None),
        "attach": (f"ATTACH '{tmp / 'other.duckdb'}' AS other", tmp / "other.duckdb"),
        "install httpfs": ("INSTALL httpfs", None),
        "load httpfs": ("LOAD httpfs", None),
        "re-enable access": ("SET enable_external_access = true", None),
        "unlock": ("RESET lock_configuration", None),
        "two statements": ("SELECT 1; SELECT 2", None),
        "statement then escape": (
            f"SELECT 1; COPY runs TO '{tmp / 'two.csv'}'",
            tmp / "two.csv",
        ),
        "write": ("DELETE FROM runs", None),
        "empty": ("  ;  ", None),
    }


@pytest.mark.parametrize("name", list(escapes(Path("/x"))))
def test_each_escape_is_one_line_exit_2(db: Path, name: str) -> None:
    sql, must_not_exist = escapes(db.parent)[name]
    result = bench("report", "--db", db, "--sql", sql)
    assert result.exit_code == 2, result.output
    out = result.output.strip()
    assert out.startswith("SQL error: ") and "\n" not in out, out
    assert SECRET not in result.output and "Traceback" not in result.output
    if must_not_exist is not None:
        assert not must_not_exist.exists()


def test_queries_still_work_and_data_is_unchanged(db: Path) -> None:
    for sql, _ in escapes(db.parent).values():
        bench("report", "--db", db, "--sql", sql)
    result = bench("report", "--db", db, "--sql", "SELECT job_id FROM runs;", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [row["job_id"] for row in json.loads(result.stdout)] == ["j1"]
    for query in (
        "DESCRIBE runs",
        "SUMMARIZE SELECT test_accuracy FROM runs",
        "PRAGMA show_tables",
    ):
        assert bench("report", "--db", db, "--sql", query).exit_code == 0, query


def test_sandbox_settings_are_locked_on_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "raw.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS x")
    with duckdb.connect(str(path), read_only=True) as con:
        assert run_sandboxed(con, "SELECT x FROM t")["x"].tolist() == [42]
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('enable_external_access', 'lock_configuration', 'autoload_known_extensions',"
                " 'autoinstall_known_extensions')"
            ).fetchall()
        )
        assert settings == {
            "enable_external_access": "false",
            "lock_configuration": "true",
            "autoload_known_extensions": "false",
            "autoinstall_known_extensions": "false",
        }
        with pytest.raises(BenchError, match="exactly one statement, got 2"):
            run_sandboxed(con, "SELECT 1; SELECT 2")
