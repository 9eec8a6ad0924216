"""The results database: one DuckDB file holding runs, their curves and published claims.

Every operation opens its own short-lived connection and closes it before returning, so
another process (``bench report`` while ``bench run`` is going) can open the file between
two writes: DuckDB holds a file lock for as long as a read-write connection is open.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd

from benchharness.errors import BenchError
from benchharness.migrations import migrate, pending_migrations
from benchharness.records import METRIC_COLUMNS, PROVENANCE_COLUMNS, RunRecord

SaveOutcome = Literal["saved", "kept_completed"]
"""What ``Store.save`` did: stored the record, or kept an earlier completed row because
the new record is a failure of the same job."""

_IDENTITY_COLUMNS = ("job_id", "config_id", "spec_name", "spec_hash", "quick", "seed")
BASE_COLUMNS = frozenset(
    [*_IDENTITY_COLUMNS, "status", "error", "config", "axes", "extra"]
    + list(METRIC_COLUMNS)
    + list(PROVENANCE_COLUMNS)
)
_AXIS_TYPES = ("DOUBLE", "BOOLEAN", "VARCHAR")


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys; non-finite floats become null."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def quote_ident(name: str) -> str:
    """A DuckDB identifier, quoted (axis columns have dots in their names)."""
    return '"' + name.replace('"', '""') + '"'


class Store:
    """The DuckDB results database at ``path`` (created, with its schema, on first write).

    ``lock_timeout`` is how long an operation waits for another process's write lock
    before raising BenchError.
    """

    def __init__(self, path: str | Path, *, lock_timeout: float = 10.0):
        self.path = Path(path)
        self.lock_timeout = lock_timeout
        self._schema_ok = False
        self._write_lock = threading.Lock()  # one writer per Store across threads

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ writes

    def save(self, record: RunRecord) -> SaveOutcome:
        """Store one job's row and curves in one committed transaction.

        Replaces an earlier row of the same ``job_id`` (and its curves), except that a
        failed record never replaces a completed one: then nothing changes and the result
        is ``"kept_completed"``.
        """
        row = _run_row(record)
        curves = pd.DataFrame(
            {
                "job_id": pd.Series([record.job_id] * len(record.curves), dtype="object"),
                "phase": pd.Series([p.phase for p in record.curves], dtype="object"),
                "step": pd.Series([int(p.step) for p in record.curves], dtype="int64"),
                "name": pd.Series([p.name for p in record.curves], dtype="object"),
                "value": pd.Series([_float(p.value) for p in record.curves], dtype="float64"),
            }
        )
        with self._write() as con, _transaction(con):
            existing = con.execute(
                "SELECT status FROM runs WHERE job_id = ?", [record.job_id]
            ).fetchone()
            if existing and existing[0] == "completed" and record.status == "failed":
                return "kept_completed"
            row.update(_axis_cells(con, record.axes))
            con.execute("DELETE FROM runs WHERE job_id = ?", [record.job_id])
            con.execute("DELETE FROM curves WHERE job_id = ?", [record.job_id])
            names = ", ".join(quote_ident(c) for c in row)
            marks = ", ".join("?" for _ in row)
            con.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", list(row.values()))
            if len(curves):
                con.register("_new_curves", curves)
                try:
                    con.execute(
                        "INSERT INTO curves SELECT job_id, phase, step, name, value"
                        " FROM _new_curves"
                    )
                finally:
                    con.unregister("_new_curves")
        return "saved"

    def save_claims(self, spec_name: str, claims: list[dict[str, Any]]) -> None:
        """Replace the published numbers of ``spec_name``.

        A claim is ``{"match": {dotted path: value}, "metric": str, "value": float,
        "se": float | None, "source": str | None}``.
        """
        rows = [_claim_row(spec_name, i, claim) for i, claim in enumerate(claims)]
        with self._write() as con, _transaction(con):
            con.execute("DELETE FROM claims WHERE spec_name = ?", [spec_name])
            for row in rows:
                con.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?)", row)

    # ------------------------------------------------------------------- reads

    def completed_ids(self, job_ids: Iterable[str]) -> set[str]:
        """The subset of ``job_ids`` already stored as completed (empty if no database)."""
        wanted = sorted(set(job_ids))
        if not wanted or not self.path.exists():
            return set()
        with self._read() as con:
            rows = con.execute(
                "SELECT job_id FROM runs WHERE status = 'completed'"
                " AND job_id IN (SELECT unnest(?::VARCHAR[]))",
                [wanted],
            ).fetchall()
        return {row[0] for row in rows}

    def runs(self, spec_name: str | None = None) -> pd.DataFrame:
        """All stored runs (of one spec if given), one row per job."""
        where, params = ("WHERE spec_name = ?", [spec_name]) if spec_name else ("", [])
        with self._read() as con:
            return con.execute(
                f"SELECT * FROM runs {where} ORDER BY spec_name, config_id, seed, job_id",
                params,
            ).df()

    def curves(self, job_id: str) -> pd.DataFrame:
        """The curves of one job: columns phase, step, name, value."""
        with self._read() as con:
            return con.execute(
                "SELECT phase, step, name, value FROM curves WHERE job_id = ?"
                " ORDER BY phase, name, step",
                [job_id],
            ).df()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run one query statement on a read-only, sandboxed connection (no file, network
        or extension access: :mod:`benchharness.sql_sandbox`); any error is a BenchError."""
        from benchharness.sql_sandbox import run_sandboxed

        with self._read() as con:
            return run_sandboxed(con, sql, params)

    # ------------------------------------------------------------- connections

    @contextlib.contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write_lock, self._open(read_only=False) as con:
            if not self._schema_ok:
                migrate(con, self.path)
                self._schema_ok = True
            yield con

    @contextlib.contextmanager
    def _read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.path.exists():
            raise BenchError(f"no results database at {self.path}; run `bench run SPEC` first")
        if not self._schema_ok:
            with self._open(read_only=True) as con:
                pending = pending_migrations(con, self.path)
            if pending:  # written by an older benchharness: bring it up to date first
                with self._write():
                    pass
            self._schema_ok = True
        with self._open(read_only=True) as con:
            yield con

    @contextlib.contextmanager
    def _open(self, *, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    raise BenchError(f"cannot open {self.path}: {_one_line(error)}") from None
                if time.monotonic() >= deadline:
                    raise BenchError(
                        f"{self.path} is locked by another process (waited"
                        f" {self.lock_timeout:g} s); try again when it has finished"
                    ) from None
                time.sleep(0.05)
            except duckdb.Error as error:
                raise BenchError(f"cannot open {self.path}: {_one_line(error)}") from None
        try:
            yield con
        finally:
            con.close()


# ---------------------------------------------------------------- row building


@contextlib.contextmanager
def _transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _run_row(record: RunRecord) -> dict[str, Any]:
    if record.status not in ("completed", "failed"):
        raise ValueError(f"RunRecord.status must be 'completed' or 'failed', got {record.status!r}")
    extra = dict(record.extra)
    row: dict[str, Any] = {
        "job_id": record.job_id,
        "config_id": record.config_id,
        "spec_name": record.spec_name,
        "spec_hash": record.spec_hash,
        "quick": bool(record.quick),
        "seed": int(record.seed),
        "status": record.status,
        "error": record.error,
        "config": canonical_json(record.config),
        "axes": canonical_json(record.axes),
    }
    for name, value in record.metrics.items():
        if name not in METRIC_COLUMNS:
            extra.setdefault(name, value)  # not a column: keep it rather than drop it
    for name, sql_type in METRIC_COLUMNS.items():
        row[name] = _cell(record.metrics.get(name), sql_type)
    provenance = dict(record.provenance)
    provenance["started_at"] = record.started_at or provenance.get("started_at")
    provenance["finished_at"] = record.finished_at or provenance.get("finished_at")
    for name, value in provenance.items():
        if name not in PROVENANCE_COLUMNS:
            extra.setdefault(f"provenance.{name}", value)
    row["extra"] = canonical_json(extra)
    for name, sql_type in PROVENANCE_COLUMNS.items():
        value = provenance.get(name)
        if sql_type == "JSON":
            row[name] = None if value is None else canonical_json(value)
        elif sql_type == "TIMESTAMP":
            row[name] = _timestamp(value)
        else:
            row[name] = None if value is None else str(value)
    return row


def _cell(value: Any, sql_type: str) -> Any:
    value = _scalar(value)
    if value is None:
        return None
    if sql_type in ("BIGINT", "INTEGER"):
        number = float(value)
        return int(round(number)) if math.isfinite(number) else None
    if sql_type == "DOUBLE":
        return float(value)
    if sql_type == "BOOLEAN":
        return bool(value)
    return str(value)


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:  # stored as naive UTC
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _axis_cells(con: duckdb.DuckDBPyConnection, axes: Mapping[str, Any]) -> dict[str, Any]:
    """Cells for the per-axis columns, adding or widening columns as needed."""
    existing = {
        name.lower(): (name, sql_type)
        for name, sql_type in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'runs'"
        ).fetchall()
    }
    cells: dict[str, Any] = {}
    for path, raw in axes.items():
        if path.lower() in {c.lower() for c in BASE_COLUMNS}:
            continue  # would shadow a base column; the value stays in the axes JSON
        value = _scalar(raw)
        wanted = _axis_type(value)
        column, current = existing.get(path.lower(), (path, None))
        if current is None:
            if wanted is None:
                continue  # no type to give the column yet
            con.execute(f"ALTER TABLE runs ADD COLUMN {quote_ident(column)} {wanted}")
            current = wanted
        elif wanted is not None and current != wanted and current != "VARCHAR":
            _widen_to_varchar(con, column)
            current = "VARCHAR"
        existing[path.lower()] = (column, current)
        cells[column] = _axis_cell(value, current)
    return cells


def _axis_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "DOUBLE"
    return "VARCHAR"


def _axis_cell(value: Any, sql_type: str) -> Any:
    if value is None:
        return None
    if sql_type == "VARCHAR":
        return value if isinstance(value, str) else canonical_json(value)
    return bool(value) if sql_type == "BOOLEAN" else float(value)


def _widen_to_varchar(con: duckdb.DuckDBPyConnection, column: str) -> None:
    """Make an axis column VARCHAR, rewriting earlier cells from the axes JSON so that
    every value has the same text form (4 not 4.0, true not True)."""
    con.execute(f"ALTER TABLE runs ALTER COLUMN {quote_ident(column)} TYPE VARCHAR")
    rows = con.execute(
        f"SELECT job_id, axes FROM runs WHERE {quote_ident(column)} IS NOT NULL"
    ).fetchall()
    updates = []
    for job_id, axes_json in rows:
        axes = json.loads(axes_json) if axes_json else {}
        match = [v for k, v in axes.items() if k.lower() == column.lower()]
        if match:
            updates.append([_axis_cell(match[0], "VARCHAR"), job_id])
    if updates:
        con.executemany(f"UPDATE runs SET {quote_ident(column)} = ? WHERE job_id = ?", updates)


def _claim_row(spec_name: str, index: int, claim: Mapping[str, Any]) -> list[Any]:
    where = f"claims of {spec_name}: claim {index + 1}"
    if not isinstance(claim, Mapping):
        raise BenchError(f"{where} — must be a table, got {type(claim).__name__}")
    unknown = sorted(set(claim) - {"match", "metric", "value", "se", "source"})
    if unknown:
        raise BenchError(f"{where} — unknown key(s) {', '.join(unknown)}")
    match = claim.get("match") or {}
    if not isinstance(match, Mapping):
        raise BenchError(f"{where}.match — must be a table of dotted path = value")
    metric = claim.get("metric")
    if not isinstance(metric, str) or not metric:
        raise BenchError(f"{where}.metric — must be a metric name")
    try:
        value = float(claim["value"])
        se = None if claim.get("se") is None else float(claim["se"])
    except (KeyError, TypeError, ValueError):
        raise BenchError(f"{where} — value (and se, if given) must be numbers") from None
    source = claim.get("source")
    return [spec_name, canonical_json(dict(match)), metric, value, se, source]


def _jsonable(value: Any) -> Any:
    value = _scalar(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)  # Path, enum, ...: their text form


def _scalar(value: Any) -> Any:
    """numpy / torch scalars to Python numbers."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def _float(value: Any) -> float:
    value = _scalar(value)
    return float("nan") if value is None else float(value)


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
