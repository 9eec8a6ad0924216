"""File handling the on-disk caches share (trained models, transformed datasets)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["aside_path", "remove_stale_temporaries"]


def aside_path(path: Path) -> Path:
    """Where a corrupt ``path`` is moved: ``<name>.corrupt-<UTC time>[-n]``, never an
    existing file."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    return aside


def remove_stale_temporaries(path: Path) -> None:
    """Temporary files of ``path`` (``<name>.tmp*``) left by a writer killed mid-save;
    call it holding the entry's lock: its holder is the only writer, so any that exist
    now are stale."""
    for tmp in path.parent.glob(f"{path.name}.tmp*"):
        with contextlib.suppress(OSError):
            tmp.unlink()
