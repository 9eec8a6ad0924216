"""Telling a corrupt results database from a busy one, and moving a corrupt one aside.

The rebuild itself is :meth:`benchharness.store.Store.recover`: it replays the journal
into a fresh file. Nothing here deletes anything: the unreadable file (and its ``.wal``)
is renamed to ``<db>.unreadable-<UTC time>`` and kept for whoever wants to look at it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from benchharness.errors import BenchError, first_line
from benchharness.journal import Journal

# What DuckDB says when a file's bytes are wrong, as opposed to busy, missing permissions
# or a newer storage version (those are not repaired by a rebuild).
_CORRUPT = re.compile(
    r"corrupt|checksum|not a valid duckdb|serializ|failure while replaying wal"
    r"|internal error|database has been invalidated|unexpected end of file|block",
    re.IGNORECASE,
)


class Unreadable(BenchError):
    """DuckDB could not open the database for a reason other than a lock."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def looks_corrupt(reason: str) -> bool:
    """Whether a DuckDB error means the file's contents are damaged."""
    return bool(_CORRUPT.search(reason))


def probe(path: Path) -> str | None:
    """Read every table of the database in full; None if that works (or another process
    holds it, so it is in use), else why not."""
    if not path.exists():
        return "the file is missing"
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as error:
        if "lock" in str(error).lower():
            return None
        return first_line(error)
    except duckdb.Error as error:
        return first_line(error)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        for table in tables:
            name = '"' + table.replace('"', '""') + '"'
            con.execute(f"SELECT * FROM {name}").fetchall()
    except duckdb.Error as error:
        return first_line(error)
    finally:
        con.close()
    return None


@contextlib.contextmanager
def exclusive(db: Path) -> Iterator[None]:
    """Only one process at a time checks and rebuilds ``db`` (``<db>.recover.lock``)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(db.with_name(db.name + ".recover.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def move_aside(db: Path) -> Path | None:
    """Rename ``db`` and its ``.wal`` to ``<db>.unreadable-<time>``; None if ``db`` is gone."""
    if not db.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = db.with_name(f"{db.name}.unreadable-{stamp}")
    if aside.exists():
        aside = db.with_name(f"{db.name}.unreadable-{stamp}-{os.getpid()}")
    os.replace(db, aside)
    wal = db.with_name(db.name + ".wal")
    if wal.exists():
        os.replace(wal, aside.with_name(aside.name + ".wal"))
    fd = os.open(db.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return aside


def describe(
    db: Path, reason: str, aside: Path | None, journal: Journal, entries: int, runs: int
) -> str:
    """One line saying what happened to ``db`` and where everything is now."""
    where = f"moved it to {aside} and" if aside else "it was missing;"
    text = (
        f"{db} could not be read ({reason}); {where} rebuilt it from {journal.path}"
        f" ({entries} journal entries, {runs} runs)"
    )
    header = journal.header()
    if aside and header is not None and not header.complete:
        text += (
            f"; results stored before the journal started ({header.created_at}) are only in {aside}"
        )
    return text
