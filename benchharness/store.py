"""The results database: one DuckDB file holding runs, their curves and published claims,
fed from an append-only journal beside it (:mod:`benchharness.journal`).

Every result goes to the journal first (fsync'd), then into DuckDB, which applies journal
entries it has not seen yet, each batch in one transaction together with how far it got
(``journal_state``). So a result is never in one file only: if the database is locked by
another process (a reader, a notebook) the result waits in the journal and is written by
the next save or command that gets the lock; if the database is corrupt or gone it is
moved aside and rebuilt from the journal (:mod:`benchharness.recovery`).

Every operation opens its own short-lived connection and closes it before returning, so
another process (``bench report`` while ``bench run`` is going) can open the file between
two writes: DuckDB holds a file lock for as long as a read-write connection is open.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from benchharness import recovery
from benchharness.errors import BenchError, first_line
from benchharness.journal import Journal, journal_path
from benchharness.migrations import migrate, pending_migrations
from benchharness.records import RunRecord
from benchharness.store_reader import Described, StoreReader
from benchharness.store_rows import (
    BASE_COLUMNS,
    ApplyOutcome,
    apply_entry,
    canonical_json,
    claims_entry,
    quote_ident,
    run_entry,
    transaction,
)

if TYPE_CHECKING:  # pandas only where a DataFrame is returned: reports read plain rows
    import pandas as pd

__all__ = ["BASE_COLUMNS", "SaveOutcome", "Store", "StoreReader", "canonical_json", "quote_ident"]

SaveOutcome = Literal["saved", "kept_completed", "journaled"]
"""What ``Store.save`` did: stored the record; kept an earlier completed row because the
new record is a failure of the same job; or journaled it only, because another process
holds the database (it is written by the next save or command that gets the lock)."""

Notice = Callable[[str], None]


class DatabaseLocked(BenchError):
    """Another process holds the database's write lock for longer than we wait."""


class Store:
    """The results database at ``path`` and its journal ``<path>.journal`` (both created on
    the first write).

    ``lock_timeout`` is how long a read waits for another process's write lock before
    raising BenchError; ``save_wait`` how long a save waits before leaving its result in
    the journal. ``on_notice`` receives one-line messages about recovery (default: stderr).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout: float = 10.0,
        save_wait: float = 1.0,
        on_notice: Notice | None = None,
    ):
        self.path = Path(path)
        self.journal = Journal(journal_path(self.path))
        self.lock_timeout = lock_timeout
        self.save_wait = save_wait
        self._notice = on_notice or _to_stderr
        self._schema_ok = False
        self._rebuilding = False
        self._write_lock = threading.RLock()  # one writer per Store across threads

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # ------------------------------------------------------------------ writes

    def save(self, record: RunRecord) -> SaveOutcome:
        """Journal one job's row and curves (durably), then write them to the database in
        one committed transaction, or leave them in the journal if it is locked.

        Replaces an earlier row of the same ``job_id`` (and its curves), except that a
        failed record never replaces a completed one: then nothing changes and the result
        is ``"kept_completed"``.
        """
        end = self._append(run_entry(record))
        test_pause("journaled")
        outcomes = self.sync(wait=self.save_wait)
        if outcomes is None:
            return "journaled"
        return outcomes.get(end, "saved")

    def save_claims(self, spec_name: str, claims: list[dict[str, Any]]) -> None:
        """Replace the published numbers of ``spec_name`` (journaled like a result).

        A claim is ``{"match": {dotted path: value}, "metric": str, "value": float,
        "se": float | None, "source": str | None}``.
        """
        self._append(claims_entry(spec_name, claims))
        self.sync(wait=self.save_wait)

    def sync(self, *, wait: float | None = None) -> dict[int, ApplyOutcome] | None:
        """Write every journal entry the database does not have yet; return what each did
        by its journal end offset, or None if another process held the database for longer
        than ``wait`` seconds (default ``lock_timeout``)."""
        try:
            with self._write(wait=wait) as con:
                outcomes = self._apply_pending(con)
        except DatabaseLocked:
            return None
        if outcomes:
            test_pause("closed", sleep=False)
        return outcomes

    def _append(self, entry: dict[str, Any]) -> int:
        legacy = not self.journal.exists() and self.path.exists()
        return self.journal.append(entry, database_has_results=legacy)

    def _applied_offset(self, con: duckdb.DuckDBPyConnection) -> int:
        """Where the database's copy of the journal ends (0: a journal it has not seen)."""
        header = self.journal.header()
        tables = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'journal_state'"
        ).fetchone()
        if header is None or not tables or not tables[0]:
            return 0
        row = con.execute(
            "SELECT applied_bytes FROM journal_state WHERE journal_id = ?", [header.journal_id]
        ).fetchone()
        return int(row[0]) if row else 0

    def _apply_pending(self, con: duckdb.DuckDBPyConnection) -> dict[int, ApplyOutcome]:
        header = self.journal.header()
        start = self._applied_offset(con)
        if header is None or start >= self.journal.size():
            return {}
        outcomes: dict[int, ApplyOutcome] = {}
        with transaction(con):
            end = start
            for end, entry in self.journal.read(start):
                outcomes[end] = apply_entry(con, entry)
            con.execute("DELETE FROM journal_state")
            con.execute("INSERT INTO journal_state VALUES (?, ?)", [header.journal_id, end])
            test_pause("commit")
        test_pause("checkpoint")  # the connection's close checkpoints the WAL next
        return outcomes

    # ------------------------------------------------------------------- reads

    def completed_ids(self, job_ids: Iterable[str]) -> set[str]:
        """The subset of ``job_ids`` stored as completed, in the database or still only in
        the journal (empty if neither exists)."""
        return {
            job_id for job_id, status in self.statuses(job_ids).items() if status == "completed"
        }

    def failed_ids(self, job_ids: Iterable[str]) -> set[str]:
        """The subset of ``job_ids`` stored as failed and never completed, in the database
        or still only in the journal: what a resume skips unless told to retry."""
        return {job_id for job_id, status in self.statuses(job_ids).items() if status == "failed"}

    def statuses(self, job_ids: Iterable[str]) -> dict[str, str]:
        """The stored status of each of ``job_ids`` that has a result, in the database or
        still only in the journal, by the merge rule of saves: completed replaces failed,
        failed never replaces completed."""
        wanted = set(job_ids)
        if not wanted:
            return {}
        found: dict[str, str] = {}
        start = 0
        if self.path.exists():
            try:
                with self._read() as con:
                    rows = con.execute(
                        "SELECT job_id, status FROM runs"
                        " WHERE job_id IN (SELECT unnest(?::VARCHAR[]))",
                        [sorted(wanted)],
                    ).fetchall()
                    start = self._applied_offset(con)
                found = dict(rows)
            except DatabaseLocked:
                if not self.journal.exists():
                    raise
                # another process keeps it open read-write: the journal holds every result
                # since it was started
        for _end, entry in self.journal.read(start):
            row = entry.get("row") or {}
            job_id, status = row.get("job_id"), row.get("status")
            if job_id in wanted and status in ("completed", "failed"):
                if found.get(job_id) != "completed":
                    found[job_id] = status
        return found

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

    def fetch(self, sql: str, params: list[Any] | None = None) -> Described:
        """Run one harness-written query (not sandboxed, see :class:`StoreReader`) and
        return its columns and rows without pandas."""
        with self.reader() as db:
            return db.fetch(sql, params)

    @contextlib.contextmanager
    def reader(self) -> Iterator[StoreReader]:
        """One read-only connection for the several queries of one report (each
        ``query`` opens its own). Waiting journal entries are brought in first, like any
        read; keep the block short, since the open connection keeps a writer (``bench
        run``) from writing: its results wait in the journal meanwhile."""
        with self._read() as con:
            yield StoreReader(self.path, con)

    # ---------------------------------------------------------------- recovery

    def recover(self) -> str:
        """Check that the database reads in full; if not (or if it is missing), move it
        aside and rebuild it from the journal. Returns what was done, in one line."""
        if not self.journal.exists():
            raise BenchError(f"no journal at {self.journal.path}: nothing to rebuild from")
        reason = recovery.probe(self.path)
        if reason is None:
            outcomes = self.sync()
            if outcomes is None:
                raise DatabaseLocked(_locked_message(self.path, self.lock_timeout))
            return (
                f"{self.path} reads in full; {len(outcomes)} journal entries were waiting"
                " and are now written"
            )
        return self._rebuild(reason)

    def _rebuild(self, reason: str) -> str:
        with self._write_lock, recovery.exclusive(self.path):
            if self.path.exists() and recovery.probe(self.path) is None:
                return f"{self.path} was rebuilt by another process"
            aside = recovery.move_aside(self.path)
            self._schema_ok = False
            self._rebuilding = True
            try:
                with self._write() as con:
                    entries = len(self._apply_pending(con))
                runs = self._count_runs()
            finally:
                self._rebuilding = False
        message = recovery.describe(self.path, reason, aside, self.journal, entries, runs)
        self._notice(message)
        return message

    def _count_runs(self) -> int:
        with self._open(read_only=True) as con:
            row = con.execute("SELECT count(*) FROM runs").fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------- connections

    @contextlib.contextmanager
    def _write(self, *, wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._write_lock, self._open(read_only=False, wait=wait) as con:
            if not self._schema_ok:
                migrate(con, self.path)
                self._schema_ok = True
            yield con

    @contextlib.contextmanager
    def _read(self, *, sync_first: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        if not self.path.exists() and not self.journal.exists():
            raise BenchError(f"no results database at {self.path}; run `bench run SPEC` first")
        if not self._schema_ok and sync_first:
            if self.path.exists():
                with self._open(read_only=True) as con:
                    behind = bool(pending_migrations(con, self.path))
                    behind = behind or self._applied_offset(con) < self.journal.size()
                    if not behind:  # up to date: read on the connection that checked
                        self._schema_ok = True
                        yield con
                        return
            # an older schema, or results waiting in the journal: bring it up to date first
            if self.sync(wait=self.save_wait) is None and not self.path.exists():
                raise DatabaseLocked(_locked_message(self.path, self.lock_timeout))
        with self._open(read_only=True) as con:
            yield con

    @contextlib.contextmanager
    def _open(
        self, *, read_only: bool, wait: float | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        try:
            con = self._connect(read_only, wait)
        except recovery.Unreadable as error:
            if self._rebuilding or not self.journal.exists():
                raise BenchError(f"cannot open {self.path}: {error.reason}") from None
            if not recovery.looks_corrupt(error.reason):
                raise BenchError(
                    f"cannot open {self.path}: {error.reason} (if the file is damaged,"
                    f" `bench recover --db {self.path}` rebuilds it from its journal)"
                ) from None
            self._rebuild(error.reason)
            con = self._connect(read_only, wait)
        try:
            yield con
        finally:
            con.close()

    def _connect(self, read_only: bool, wait: float | None) -> duckdb.DuckDBPyConnection:
        wait = self.lock_timeout if wait is None else wait
        deadline = time.monotonic() + wait
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.Error as error:
                text = first_line(error)
                if not isinstance(error, duckdb.IOException) or "lock" not in text.lower():
                    raise recovery.Unreadable(text) from None
                if time.monotonic() >= deadline:
                    raise DatabaseLocked(_locked_message(self.path, wait)) from None
                time.sleep(0.05)


def test_pause(point: str, *, sleep: bool = True) -> None:
    """Test hook for the kill tests: with ``BENCH_STORE_TEST_PAUSE=<seconds>`` set, say
    ``store-hook <point>`` on stderr and sleep, widening the window a kill can land in
    (``journaled``: before the database is opened; ``commit``: inside the transaction;
    ``checkpoint``: after the commit, before the close that checkpoints; ``closed``: after
    it, no sleep). Unset: nothing."""
    pause = os.environ.get("BENCH_STORE_TEST_PAUSE")
    if pause:
        print(f"store-hook {point}", file=sys.stderr, flush=True)
        if sleep:
            time.sleep(float(pause))


def _locked_message(path: Path, waited: float) -> str:
    return (
        f"{path} is locked by another process (waited {waited:g} s); try again when it has finished"
    )


def _to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
