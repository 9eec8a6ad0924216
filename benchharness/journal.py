"""The results journal: an append-only file beside the database holding every result first.

Each line is ``<checksum> <json>``: the first 16 hex digits of the sha256 of the JSON text,
a space, the entry (a JSON object with a ``kind``). The first line is a header naming the
journal (``journal_id``) and saying whether it saw the database from its start
(``complete``). :meth:`Journal.append` returns only after the line is on disk (write,
flush, ``os.fsync``; the directory is fsync'd when the file is created), so an entry the
caller has seen appended survives a kill or a power cut. A line that a kill tore in half
has no newline or a wrong checksum: readers skip it, and the next append starts on a
fresh line. Appends from several processes are serialised by an exclusive ``flock`` on
the file. POSIX only (``fcntl``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FORMAT = 1


def journal_path(db: Path) -> Path:
    """The journal of the database at ``db``: ``<db>.journal``."""
    return db.with_name(db.name + ".journal")


@dataclass(frozen=True)
class Header:
    journal_id: str
    created_at: str
    complete: bool  # the database had no results when the journal started


class Journal:
    """The append-only journal at ``path`` (created on the first append)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.damaged_lines = 0  # lines skipped by the last read: torn or failing their checksum

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    def size(self) -> int:
        """Bytes in the journal (0 if it does not exist yet)."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def append(self, entry: dict[str, Any], *, database_has_results: bool = False) -> int:
        """Write ``entry`` durably; return the journal's size after it (the entry's end).

        ``database_has_results`` is recorded in the header (``complete`` = not it) when
        this append creates the journal.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and not _starts_with_header(fd):
                # the write that created the file was torn, so nothing in it was ever
                # reported written: start over
                os.ftruncate(fd, 0)
                size = 0
            lines = []
            if size == 0:
                header = {
                    "kind": "header",
                    "format": FORMAT,
                    "journal_id": uuid.uuid4().hex,
                    "created_at": datetime.now(UTC).isoformat(),
                    "complete": not database_has_results,
                }
                lines.append(_line(header))
            elif os.pread(fd, 1, size - 1) != b"\n":
                lines.append(b"\n")  # a kill tore the last line: start a fresh one
            lines.append(_line(entry))
            data = b"".join(lines)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
            if size == 0:
                _fsync_directory(self.path.parent)
            return size + len(data)
        finally:
            os.close(fd)  # closing releases the flock

    def header(self) -> Header | None:
        """The header, or None if the journal does not exist or its first line is torn."""
        for _end, entry in self.read(0, with_header=True):
            if entry.get("kind") == "header":
                return Header(entry["journal_id"], entry["created_at"], bool(entry["complete"]))
            return None
        return None

    def read(self, start: int = 0, *, with_header: bool = False) -> Iterator[tuple[int, dict]]:
        """Every intact entry from byte ``start`` on, as (end offset, entry).

        ``start`` must be 0 or an end offset returned before. Torn and damaged lines are
        skipped and counted in ``damaged_lines``.
        """
        self.damaged_lines = 0
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below, generator-safe
        except FileNotFoundError:
            return
        with handle:
            handle.seek(start)
            offset = start
            for raw in handle:
                offset += len(raw)
                entry = _parse(raw)
                if entry is None:
                    if raw.strip():
                        self.damaged_lines += 1
                    continue
                if entry.get("kind") == "header" and not with_header:
                    continue
                yield offset, entry


def _starts_with_header(fd: int) -> bool:
    first = os.pread(fd, 4096, 0)
    entry = _parse(first[: first.find(b"\n") + 1]) if b"\n" in first else None
    return entry is not None and entry.get("kind") == "header"


def _line(entry: dict[str, Any]) -> bytes:
    text = json.dumps(entry, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    if "\n" in text:  # json.dumps escapes newlines in strings; this cannot happen
        raise ValueError("journal entry would span lines")
    body = text.encode()
    return _digest(body) + b" " + body + b"\n"


def _parse(raw: bytes) -> dict | None:
    if not raw.endswith(b"\n"):
        return None  # torn: the kill came before the newline
    digest, _, body = raw.rstrip(b"\n").partition(b" ")
    if not body or digest != _digest(body):
        return None
    try:
        entry = json.loads(body)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _digest(body: bytes) -> bytes:
    return hashlib.sha256(body).hexdigest()[:16].encode()


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
