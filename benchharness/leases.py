"""Per-job leases: one study, one runner per job.

A ``bench run`` claims each job it is about to run with an exclusive POSIX record lock on
one byte of ``<db>.leases/jobs.lock`` (the byte's offset is a hash of the job id), so one
open file serves any number of jobs. The kernel drops every lock of a process when it
exits, however it exits (``kill -9`` included): a lease expires with its owner, and no
stale lease is ever left behind. A second run on the same database takes only the jobs
nobody holds. Each runner also keeps ``runner-<host>-<pid>.json`` there (pid, host,
start time, command), ``flock``-ed while it lives, so others can say who holds their jobs.

Record locks belong to a process, not to a file descriptor: two ``Leases`` of one
database in one process do not exclude each other, and closing any descriptor of
``jobs.lock`` in this process would drop them all, so only this module opens it. POSIX
only (``fcntl``); on a network file system the locks are only as good as its locking.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def leases_dir(db: Path) -> Path:
    """Where the leases of the database at ``db`` live: ``<db>.leases/``."""
    return db.with_name(db.name + ".leases")


class Leases:
    """The jobs this process holds on one database; a context manager that releases them."""

    def __init__(self, db: Path):
        self.dir = leases_dir(Path(db))
        self._jobs_fd: int | None = None
        self._info: Path | None = None
        self._info_fd: int | None = None
        self._held: set[str] = set()

    def __enter__(self) -> Leases:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def claim(self, job_ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Take every job of ``job_ids`` that no other live process holds.

        Returns (taken, held by another process), each in the order given.
        """
        self._start()
        assert self._jobs_fd is not None
        taken, elsewhere = [], []
        for job_id in job_ids:
            if job_id not in self._held:
                try:
                    fcntl.lockf(self._jobs_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _offset(job_id), 0)
                except OSError as error:
                    if error.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                    elsewhere.append(job_id)
                    continue
                self._held.add(job_id)
            taken.append(job_id)
        return taken, elsewhere

    def others(self) -> list[dict[str, Any]]:
        """The other live runners of this database (pid, host, started_at, command);
        files of runners that died are removed."""
        found = []
        for path in sorted(self.dir.glob("runner-*.json")):
            if path == self._info:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except OSError:  # its owner holds it: alive
                    with open(path, encoding="utf-8") as handle:
                        found.append(json.load(handle))
                else:  # nobody holds it: its owner died
                    path.unlink(missing_ok=True)
            except (OSError, ValueError):
                continue
            finally:
                os.close(fd)
        return found

    def release(self) -> None:
        """Give up every lease (also happens by itself when the process exits)."""
        if self._jobs_fd is not None:
            os.close(self._jobs_fd)
            self._jobs_fd = None
        self._held.clear()
        if self._info is not None:
            self._info.unlink(missing_ok=True)
            self._info = None
        if self._info_fd is not None:
            os.close(self._info_fd)
            self._info_fd = None

    def _start(self) -> None:
        if self._jobs_fd is not None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._jobs_fd = os.open(self.dir / "jobs.lock", os.O_RDWR | os.O_CREAT, 0o644)
        host, pid = socket.gethostname(), os.getpid()
        info = {
            "pid": pid,
            "host": host,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        final = self.dir / f"runner-{host}-{pid}.json"
        temporary = final.with_suffix(".tmp")
        # locked before it gets its name, so nobody takes it for a dead runner's file
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps(info).encode())
        os.replace(temporary, final)
        self._info, self._info_fd = final, fd


def describe_runners(runners: list[dict[str, Any]]) -> str:
    """``pid 123 on host-a since 2026-11-29T18:02:11+00:00`` for each, or a fallback."""
    if not runners:
        return "another process"
    return "; ".join(
        f"pid {r.get('pid')} on {r.get('host')} since {r.get('started_at')}" for r in runners
    )


def _offset(job_id: str) -> int:
    """The byte of ``jobs.lock`` that stands for ``job_id`` (below 2**60: any off_t)."""
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:15], 16)
