"""Harness-written queries on one open read-only connection (:meth:`Store.reader`):
the reports' several queries share it, as DataFrames or as plain rows (no pandas)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from benchharness.errors import BenchError, first_line

if TYPE_CHECKING:  # pandas only where a DataFrame is returned: reports read plain rows
    import pandas as pd

__all__ = ["Described", "StoreReader"]

Described = tuple[list[tuple[str, str]], list[tuple[Any, ...]]]
"""A query result without pandas: (column name, SQL type name) per column, and the rows
as tuples of Python values (None for NULL)."""


class StoreReader:
    """Internal (report) queries on one read-only connection of :meth:`Store.reader`;
    unlike :meth:`Store.query` not sandboxed, so only for SQL the harness writes."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection):
        self.path = path
        self._con = con

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run one query; any DuckDB error is a BenchError."""
        with _sql_errors():
            return self._con.execute(sql, params or []).df()

    def reader(self) -> contextlib.AbstractContextManager[StoreReader]:
        """This reader: code written for a Store (``with store.reader()``) runs on it."""
        return contextlib.nullcontext(self)

    def fetch(self, sql: str, params: list[Any] | None = None) -> Described:
        """Run one query; its columns and rows as Python values (no pandas). Any DuckDB
        error is a BenchError."""
        with _sql_errors():
            result = self._con.execute(sql, params or [])
            described = [(str(d[0]), str(d[1])) for d in result.description or []]
            return described, result.fetchall()


@contextlib.contextmanager
def _sql_errors() -> Iterator[None]:
    try:
        yield
    except duckdb.Error as error:
        raise BenchError(f"SQL error: {first_line(error)}") from None
