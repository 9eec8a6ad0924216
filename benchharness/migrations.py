"""Versioned schema of the results database: ordered, named migrations.

Each migration is a function of a DuckDB connection, listed in ``MIGRATIONS`` in the order
it must run. Applied ones are recorded in ``schema_migrations(name, applied_at)`` inside
the database itself, so a database always says which schema it has. To change the schema,
append ``("m002_what_it_does", _m002_what_it_does)``; never edit a migration that has
shipped (databases in the wild already ran it).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from benchharness.errors import BenchError

Migration = Callable[[duckdb.DuckDBPyConnection], None]

# Frozen copies of the column lists as of m001: records.py may grow, this must not.
_M001_METRICS = {
    "test_accuracy": "DOUBLE",
    "test_loss": "DOUBLE",
    "params": "BIGINT",
    "flops": "BIGINT",
    "flops_effective": "BIGINT",
    "size_bits": "BIGINT",
    "compression_ratio": "DOUBLE",
    "compression_realised": "BOOLEAN",
    "input_values": "BIGINT",
    "input_ratio": "DOUBLE",
    "latency_b1_median_ms": "DOUBLE",
    "latency_b1_p90_ms": "DOUBLE",
    "latency_batch_median_ms": "DOUBLE",
    "latency_batch_p90_ms": "DOUBLE",
    "latency_batch_size": "INTEGER",
    "train_seconds": "DOUBLE",
}
_M001_PROVENANCE = {
    "git_commit": "VARCHAR",
    "package_version": "VARCHAR",
    "plugin_versions": "JSON",
    "torch_version": "VARCHAR",
    "cuda_version": "VARCHAR",
    "device": "VARCHAR",
    "cpu": "VARCHAR",
    "hostname": "VARCHAR",
    "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
}


def _m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    columns = {
        "job_id": "VARCHAR PRIMARY KEY",
        "config_id": "VARCHAR NOT NULL",
        "spec_name": "VARCHAR NOT NULL",
        "spec_hash": "VARCHAR",
        "quick": "BOOLEAN NOT NULL",
        "seed": "BIGINT",
        "status": "VARCHAR NOT NULL CHECK (status IN ('completed', 'failed'))",
        "error": "VARCHAR",
        "config": "JSON",
        "axes": "JSON",
        **_M001_METRICS,
        "extra": "JSON",
        **_M001_PROVENANCE,
    }
    body = ",\n  ".join(f'"{name}" {sql_type}' for name, sql_type in columns.items())
    con.execute(f"CREATE TABLE runs (\n  {body}\n)")
    con.execute(
        "CREATE TABLE curves (job_id VARCHAR NOT NULL, phase VARCHAR NOT NULL,"
        " step BIGINT NOT NULL, name VARCHAR NOT NULL, value DOUBLE)"
    )
    con.execute(
        "CREATE TABLE claims (spec_name VARCHAR NOT NULL, match JSON, metric VARCHAR NOT NULL,"
        " value DOUBLE, se DOUBLE, source VARCHAR)"
    )


def _m002_reuse_and_honest_costs(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE runs ADD COLUMN train_reused BOOLEAN")
    con.execute("ALTER TABLE runs ADD COLUMN compress_seconds DOUBLE")
    con.execute("ALTER TABLE runs ADD COLUMN dense_test_accuracy DOUBLE")
    con.execute("ALTER TABLE runs ADD COLUMN transform_flops BIGINT")
    con.execute("ALTER TABLE runs ADD COLUMN flops_total BIGINT")
    for which in ("b1_median", "b1_p90", "batch_median", "batch_p90"):
        con.execute(f"ALTER TABLE runs ADD COLUMN latency_deployed_{which}_ms DOUBLE")
    con.execute("ALTER TABLE runs ADD COLUMN torch_threads INTEGER")


def _m003_journal_state(con: duckdb.DuckDBPyConnection) -> None:
    # how much of which journal (benchharness.journal) the database holds
    con.execute(
        "CREATE TABLE journal_state (journal_id VARCHAR PRIMARY KEY, applied_bytes BIGINT NOT NULL)"
    )


def _m004_selected_epoch(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE runs ADD COLUMN selected_epoch INTEGER")


def _m005_precision(con: duckdb.DuckDBPyConnection) -> None:
    # [compute] precision of each run; every run stored before it existed trained in fp32
    con.execute("ALTER TABLE runs ADD COLUMN precision VARCHAR")
    con.execute(
        "UPDATE runs SET precision = "
        "coalesce(json_extract_string(config, '$.compute.precision'), 'fp32')"
    )


MIGRATIONS: list[tuple[str, Migration]] = [
    ("m001_initial", _m001_initial),
    ("m002_reuse_and_honest_costs", _m002_reuse_and_honest_costs),
    ("m003_journal_state", _m003_journal_state),
    ("m004_selected_epoch", _m004_selected_epoch),
    ("m005_precision", _m005_precision),
]


def applied_migrations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names recorded in ``schema_migrations`` (empty for a fresh database)."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchone()
    if not exists or not exists[0]:
        return []
    rows = con.execute("SELECT name FROM schema_migrations ORDER BY name").fetchall()
    return [row[0] for row in rows]


def pending_migrations(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Known migrations not yet applied; BenchError if the database knows one we don't."""
    applied = applied_migrations(con)
    known = [name for name, _ in MIGRATIONS]
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise BenchError(
            f"{path} was written by a newer benchharness (migration {unknown[-1]}); upgrade"
        )
    return [name for name in known if name not in applied]


def migrate(con: duckdb.DuckDBPyConnection, path: Path) -> list[str]:
    """Apply every pending migration, each in its own transaction; return their names."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(name VARCHAR PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
    )
    pending = pending_migrations(con, path)
    functions = dict(MIGRATIONS)
    for name in pending:
        con.execute("BEGIN TRANSACTION")
        try:
            functions[name](con)
            now = datetime.now(UTC).replace(tzinfo=None)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)", [name, now])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    return pending
