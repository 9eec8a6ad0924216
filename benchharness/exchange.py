"""Sharing results between machines: export a database's runs, curves and claims as
Parquet or CSV files, and import other databases or exports into this one by job id.

Import rule, per job id (the id is a hash of the spec name and the resolved
configuration, so the same id is the same job wherever it ran):

* not here yet: imported;
* here as failed, imported as completed: imported (a completed result wins);
* here as completed, imported as failed: skipped, the completed row is kept;
* same status and the same measurements (every metric column and ``extra``): identical,
  skipped;
* both completed with different measurements (the job ran twice, e.g. on two
  machines): a **conflict**, listed, and the row already here is kept; never overwritten;
* both failed with different errors: the row here is kept (counted as identical failures).

Imported rows go through the same durable path as ``bench run``: each is appended to the
journal (fsync'd) before anything else, then written to DuckDB (in batches of
``SYNC_EVERY``, one transaction each), so a kill mid-import loses nothing that was
reported imported, and rerunning the import finishes the rest (what is already in is
skipped as identical).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from benchharness.errors import BenchError
from benchharness.records import METRIC_COLUMNS, PROVENANCE_COLUMNS
from benchharness.store import Store
from benchharness.store_rows import BASE_COLUMNS, canonical_json

FORMATS = ("parquet", "csv")
TABLES = ("runs", "curves", "claims")
SYNC_EVERY = 200  # journal entries written to DuckDB together (each is durable before)
_MEASURED = [*METRIC_COLUMNS, "extra"]
_TIMESTAMPS = [name for name, t in PROVENANCE_COLUMNS.items() if t == "TIMESTAMP"]
_JSON_COLUMNS = {"config", "axes", "extra"} | {
    name for name, t in PROVENANCE_COLUMNS.items() if t == "JSON"
}


def export(store: Store, directory: Path, fmt: str, spec_name: str | None = None) -> dict:
    """Write ``runs``, ``curves`` and ``claims`` (of one spec, if given) to
    ``directory/<table>.<fmt>``; return the row count of each table."""
    if fmt not in FORMATS:
        raise BenchError(f"--format: must be parquet or csv, got '{fmt}'")
    directory.mkdir(parents=True, exist_ok=True)
    where = "" if spec_name is None else f"WHERE spec_name = {_literal(spec_name)}"
    queries = {
        "runs": f"SELECT * FROM runs {where} ORDER BY spec_name, config_id, seed, job_id",
        "curves": (
            "SELECT * FROM curves WHERE job_id IN (SELECT job_id FROM runs "
            f"{where}) ORDER BY job_id, phase, name, step"
        ),
        "claims": f"SELECT * FROM claims {where}",
    }
    options = "(FORMAT parquet)" if fmt == "parquet" else "(FORMAT csv, HEADER true)"
    counts = {}
    with store._read() as con:
        for table, query in queries.items():
            target = directory / f"{table}.{fmt}"
            con.execute(f"COPY ({query}) TO {_literal(str(target))} {options}")
            counts[table] = con.execute(f"SELECT count(*) FROM ({query})").fetchone()[0]
    return counts


@dataclass
class ImportReport:
    """What one import did; ``conflicts`` holds (job id, source, what differs)."""

    imported: int = 0
    identical: int = 0
    kept_completed: int = 0
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)
    claims: int = 0
    waiting: bool = False  # another process held the database: rows wait in the journal

    def summary(self) -> str:
        return (
            f"{self.imported} runs imported, {self.identical} identical skipped, "
            f"{self.kept_completed} failed ones skipped (completed here), "
            f"{len(self.conflicts)} conflicts (kept the existing row), "
            f"{self.claims} specs' claims imported"
            + (
                "; the database is held by another process: the imported rows wait in its"
                " journal and are written by the next `bench` command"
                if self.waiting
                else ""
            )
        )


def import_paths(store: Store, paths: Iterable[Path]) -> ImportReport:
    """Merge every database (``.duckdb`` file) or export directory in ``paths`` into
    ``store`` by job id, following the rule in this module's docstring."""
    report = ImportReport()
    for path in paths:
        with _source(Path(path)) as con:
            _import_one(store, con, str(path), report)
    return report


def _import_one(store: Store, src: duckdb.DuckDBPyConnection, name: str, report: ImportReport):
    existing = _existing_rows(store)
    have_claims = _existing_claim_specs(store)
    columns = [d[0] for d in src.execute("SELECT * FROM runs LIMIT 0").description]
    missing = sorted({"job_id", "status", "axes", "config"} - set(columns))
    if missing:
        raise BenchError(f"{name}: runs table lacks column(s) {', '.join(missing)}")
    for values in src.execute("SELECT * FROM runs ORDER BY job_id").fetchall():
        row = _normalise(dict(zip(columns, values, strict=True)))
        job_id = row["job_id"]
        verdict = _decide(existing.get(job_id), row)
        if verdict == "import":
            curves = src.execute(
                "SELECT phase, step, name, value FROM curves WHERE job_id = ?"
                " ORDER BY phase, name, step",
                [job_id],
            ).fetchall()
            store._append(_run_entry(row, curves))  # durable from here on
            if report.imported % SYNC_EVERY == SYNC_EVERY - 1:
                store.sync(wait=store.save_wait)
            existing[job_id] = row
            report.imported += 1
        elif verdict == "identical":
            report.identical += 1
        elif verdict == "kept_completed":
            report.kept_completed += 1
        else:
            report.conflicts.append((job_id, name, verdict))
    if store.sync() is None:
        report.waiting = True
    claims = src.execute("SELECT * FROM claims ORDER BY spec_name").fetchall()
    by_spec: dict[str, list[dict[str, Any]]] = {}
    for spec_name, match, metric, value, se, source in claims:
        by_spec.setdefault(spec_name, []).append(
            {
                "match": json.loads(match) if isinstance(match, str) else match or {},
                "metric": metric,
                "value": value,
                "se": _none_if_nan(se),
                "source": source,
            }
        )
    for spec_name, rows in by_spec.items():
        if spec_name not in have_claims:  # the spec's own run here wrote its claims already
            store.save_claims(spec_name, rows)
            report.claims += 1


def _decide(here: dict[str, Any] | None, incoming: dict[str, Any]) -> str:
    """``import``, ``identical``, ``kept_completed`` or the conflict's description."""
    if here is None:
        return "import"
    if here["status"] == "failed" and incoming["status"] == "completed":
        return "import"
    if here["status"] == "completed" and incoming["status"] == "failed":
        return "kept_completed"
    if here["status"] == "failed":
        return "identical"
    differ = [c for c in _MEASURED if not _same(here.get(c), incoming.get(c))]
    if not differ:
        return "identical"
    shown = ", ".join(
        f"{c} {_show(here.get(c))} here vs {_show(incoming.get(c))}" for c in differ[:3]
    )
    more = f" (+{len(differ) - 3} more)" if len(differ) > 3 else ""
    return f"both completed, different {shown}{more}"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "{[":
        try:
            return json.loads(a) == json.loads(b)
        except ValueError:
            return a == b
    return a == b


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    """The base columns of a source row in the types the store writes (CSV reads may have
    guessed others); JSON columns as canonical text."""
    out: dict[str, Any] = {}
    for name in BASE_COLUMNS:
        value = _none_if_nan(row.get(name)) if name not in METRIC_COLUMNS else row.get(name)
        sql_type = METRIC_COLUMNS.get(name) or PROVENANCE_COLUMNS.get(name)
        if value is None:
            out[name] = None
        elif name in _JSON_COLUMNS:
            out[name] = canonical_json(json.loads(value) if isinstance(value, str) else value)
        elif name in _TIMESTAMPS:
            out[name] = value if isinstance(value, str) else value.isoformat()
        elif sql_type in ("BIGINT", "INTEGER") or name == "seed":
            out[name] = int(value)
        elif sql_type == "DOUBLE":
            out[name] = float(value)
        elif sql_type == "BOOLEAN" or name == "quick":
            out[name] = value if isinstance(value, bool) else str(value).lower() == "true"
        else:
            out[name] = str(value)
    return out


def _run_entry(row: dict[str, Any], curves: list[tuple]) -> dict[str, Any]:
    """The journal entry ``bench run`` would have written for this row."""
    return {
        "kind": "run",
        "row": row,
        "axes": json.loads(row["axes"]) if row.get("axes") else {},
        "curves": [[phase, int(step), name, float(value)] for phase, step, name, value in curves],
    }


def _existing_rows(store: Store) -> dict[str, dict[str, Any]]:
    if not store.path.exists() and not store.journal.exists():
        return {}
    store.sync()
    with store._read() as con:
        cur = con.execute(f"SELECT job_id, status, {', '.join(_MEASURED)} FROM runs")
        columns = [d[0] for d in cur.description]
        return {r[0]: _normalise(dict(zip(columns, r, strict=True))) for r in cur.fetchall()}


def _existing_claim_specs(store: Store) -> set[str]:
    if not store.path.exists() and not store.journal.exists():
        return set()
    with store._read() as con:
        return {r[0] for r in con.execute("SELECT DISTINCT spec_name FROM claims").fetchall()}


class _source:
    """An in-memory DuckDB connection with the source's runs, curves and claims as views."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> duckdb.DuckDBPyConnection:
        self.con = duckdb.connect(":memory:")
        try:
            if self.path.is_dir():
                for table in TABLES:
                    self.con.execute(f"CREATE VIEW {table} AS SELECT * FROM {self._reader(table)}")
            elif self.path.is_file():
                self.con.execute(f"ATTACH {_literal(str(self.path))} AS src (READ_ONLY)")
                for table in TABLES:
                    self.con.execute(f"CREATE VIEW {table} AS SELECT * FROM src.{table}")
            else:
                raise BenchError(f"{self.path}: no such database or export directory")
        except duckdb.Error as error:
            self.con.close()
            raise BenchError(
                f"{self.path}: cannot read it ({str(error).splitlines()[0]})"
            ) from None
        except BaseException:
            self.con.close()
            raise
        return self.con

    def _reader(self, table: str) -> str:
        for fmt, reader in (("parquet", "read_parquet"), ("csv", "read_csv_auto")):
            file = self.path / f"{table}.{fmt}"
            if file.exists():
                extra = ", header=true, all_varchar=true" if fmt == "csv" else ""
                return f"{reader}({_literal(str(file))}{extra})"
        raise BenchError(f"{self.path}: no {table}.parquet or {table}.csv in this directory")

    def __exit__(self, *exc: object) -> None:
        self.con.close()


def _none_if_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
