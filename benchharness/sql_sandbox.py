"""Running user SQL (``bench report --sql``) so that it can only read the results.

The connection it gets is already read-only (no change to the data). On top of that the
sandbox switches off everything that reaches outside the database file, then locks the
configuration so the query cannot switch it back:

* ``enable_external_access = false`` — no file or network I/O: ``COPY … TO``,
  ``EXPORT DATABASE``, ``read_csv``/``read_text``/``glob``, ``ATTACH`` of a file,
  ``INSTALL``/``LOAD`` of extensions and persistent secrets all fail;
* ``autoinstall_known_extensions``/``autoload_known_extensions = false`` and
  ``allow_community_extensions = false`` — no extension is fetched or loaded behind the
  query's back (the JSON functions the reports use are built in);
* ``lock_configuration = true`` — any later ``SET``/``RESET``/``PRAGMA`` that would change
  a setting fails.

DuckDB documents these as settable with ``SET`` on an open connection, in one direction
only (external access can be disabled at run time, never re-enabled). They apply to the
database instance, which lives only as long as the store's short-lived read connection.

Exactly one statement runs per call, and only a query (``SELECT``/``WITH``/``FROM``/
``DESCRIBE``/``SHOW``/``SUMMARIZE``/``VALUES``, ``EXPLAIN``, ``PRAGMA``/``CALL`` of a
table function): ``ATTACH``, ``COPY``, ``EXPORT``, ``INSTALL``, ``SET`` and the like are
refused by type before anything runs, so the sandbox settings are a second wall.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pandas as pd

from benchharness.errors import BenchError, first_line

__all__ = ["ALLOWED_STATEMENTS", "SANDBOX_SETTINGS", "run_sandboxed"]

SANDBOX_SETTINGS: tuple[tuple[str, str], ...] = (
    ("enable_external_access", "false"),
    ("autoinstall_known_extensions", "false"),
    ("autoload_known_extensions", "false"),
    ("allow_community_extensions", "false"),
    ("lock_configuration", "true"),  # last: it freezes the ones above
)

ALLOWED_STATEMENTS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL"})


def run_sandboxed(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None
) -> pd.DataFrame:
    """Run one read-only query statement ``sql`` on ``con`` inside the sandbox.

    Raises :class:`BenchError` (one line) for more or fewer than one statement, a
    statement that is not a query, and any DuckDB error (an escape attempt included).
    """
    try:
        _lock_down(con)
        statements = con.extract_statements(sql)
    except duckdb.Error as error:
        raise BenchError(f"SQL error: {first_line(error)}") from None
    if len(statements) != 1:
        raise BenchError(
            f"SQL error: --sql takes exactly one statement, got {len(statements)}"
            + (" (separated by ';')" if len(statements) > 1 else "")
        )
    kind = statements[0].type.name
    if kind not in ALLOWED_STATEMENTS:
        raise BenchError(
            f"SQL error: read-only: only a query can run here (SELECT, WITH, DESCRIBE, "
            f"SUMMARIZE, EXPLAIN, ...), got a {kind} statement"
        )
    try:
        result = con.execute(sql, params) if params else con.execute(sql)
        if result.description is None:
            return pd.DataFrame()
        return result.df()
    except duckdb.Error as error:
        raise BenchError(f"SQL error: {first_line(error)}") from None


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Apply :data:`SANDBOX_SETTINGS`, unless an earlier call on ``con`` already did."""
    current = dict(
        con.execute(
            "SELECT name, lower(value) FROM duckdb_settings() WHERE name IN "
            "(SELECT unnest(?::VARCHAR[]))",
            [[name for name, _ in SANDBOX_SETTINGS]],
        ).fetchall()
    )
    if current.get("lock_configuration") == "true":
        loose = [name for name, value in SANDBOX_SETTINGS if current.get(name) != value]
        if loose:  # locked by someone else in a weaker state: refuse rather than run
            raise BenchError(f"SQL error: the connection is locked with {', '.join(loose)} open")
        return
    for name, value in SANDBOX_SETTINGS:
        con.execute(f"SET {name} = {value}")
