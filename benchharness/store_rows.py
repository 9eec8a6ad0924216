"""Rows of the results database: how a RunRecord or a spec's claims become journal entries,
and how an entry is applied to an open DuckDB transaction (runs, curves, axis columns).

An entry holds the row exactly as it will be inserted (timestamps as ISO text, non-finite
numbers kept), so a database rebuilt from the journal equals the one written directly.
Applying an entry is idempotent by job id: it replaces the job's row and curves, except
that a failed result never replaces a completed one.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime
from typing import Any, Literal

import duckdb

from benchharness.errors import BenchError
from benchharness.records import METRIC_COLUMNS, PROVENANCE_COLUMNS, RunRecord

ApplyOutcome = Literal["saved", "kept_completed"]
_TIMESTAMP_COLUMNS = [name for name, t in PROVENANCE_COLUMNS.items() if t == "TIMESTAMP"]

_IDENTITY_COLUMNS = ("job_id", "config_id", "spec_name", "spec_hash", "quick", "seed")
# read from the configuration, given a column of their own for reports and queries
CONFIG_COLUMNS = ("precision",)
BASE_COLUMNS = frozenset(
    [*_IDENTITY_COLUMNS, *CONFIG_COLUMNS, "status", "error", "config", "axes", "extra"]
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


# ---------------------------------------------------------------- row building


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _run_row(record: RunRecord) -> dict[str, Any]:
    # here, not at the top: the spec's pydantic models are not needed to read the store
    from benchharness.spec_sections import job_precision

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
        "precision": job_precision(record.config),
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


# ------------------------------------------------------------ journal entries


def run_entry(record: RunRecord) -> dict[str, Any]:
    """The journal entry of one finished job: its row, raw axes and curves."""
    row = _run_row(record)
    for name in _TIMESTAMP_COLUMNS:
        if row.get(name) is not None:
            row[name] = row[name].isoformat()
    return {
        "kind": "run",
        "row": row,
        "axes": {str(k): _plain(v) for k, v in record.axes.items()},
        "curves": [[p.phase, int(p.step), p.name, _float(p.value)] for p in record.curves],
    }


def claims_entry(spec_name: str, claims: list[dict[str, Any]]) -> dict[str, Any]:
    """The journal entry replacing the published numbers of ``spec_name`` (checked here,
    so a bad claim is a BenchError before anything is written)."""
    rows = [_claim_row(spec_name, i, claim) for i, claim in enumerate(claims)]
    return {"kind": "claims", "spec_name": spec_name, "rows": rows}


def apply_entry(con: duckdb.DuckDBPyConnection, entry: Mapping[str, Any]) -> ApplyOutcome:
    """Write one journal entry into the open transaction of ``con``."""
    from benchharness.spec_sections import job_precision

    if entry["kind"] == "claims":
        con.execute("DELETE FROM claims WHERE spec_name = ?", [entry["spec_name"]])
        for row in entry["rows"]:
            con.execute("INSERT INTO claims VALUES (?, ?, ?, ?, ?, ?)", row)
        return "saved"
    if entry["kind"] != "run":
        return "saved"  # written by a newer benchharness: not ours to interpret
    row = dict(entry["row"])
    for name in _TIMESTAMP_COLUMNS:
        row[name] = _timestamp(row.get(name))
    if row.get("precision") is None:  # an entry or export from before m005_precision
        row["precision"] = job_precision(json.loads(row.get("config") or "{}"))
    job_id = row["job_id"]
    existing = con.execute("SELECT status FROM runs WHERE job_id = ?", [job_id]).fetchone()
    if existing and existing[0] == "completed" and row["status"] == "failed":
        return "kept_completed"
    row.update(_axis_cells(con, entry["axes"]))
    con.execute("DELETE FROM runs WHERE job_id = ?", [job_id])
    con.execute("DELETE FROM curves WHERE job_id = ?", [job_id])
    names = ", ".join(quote_ident(c) for c in row)
    marks = ", ".join("?" for _ in row)
    con.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", list(row.values()))
    points = entry["curves"]
    if points:
        import pandas as pd  # here only: reading the store (reports) needs no pandas

        curves = pd.DataFrame(
            {
                "job_id": pd.Series([job_id] * len(points), dtype="object"),
                "phase": pd.Series([p[0] for p in points], dtype="object"),
                "step": pd.Series([p[1] for p in points], dtype="int64"),
                "name": pd.Series([p[2] for p in points], dtype="object"),
                "value": pd.Series([_float(p[3]) for p in points], dtype="float64"),
            }
        )
        con.register("_new_curves", curves)
        try:
            con.execute(
                "INSERT INTO curves SELECT job_id, phase, step, name, value FROM _new_curves"
            )
        finally:
            con.unregister("_new_curves")
    return "saved"


def _plain(value: Any) -> Any:
    """An axis value as JSON keeps it: scalars as they are (non-finite floats included)."""
    value = _scalar(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return _jsonable(value)
