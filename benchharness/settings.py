"""Where data and results live. Environment variables override the defaults."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "BENCH_DATA_DIR"
DB_ENV = "BENCH_DB"
DEFAULT_DB = Path("results") / "bench.duckdb"


def data_dir() -> Path:
    """``$BENCH_DATA_DIR``, else ``$XDG_CACHE_HOME/benchharness/data`` (~/.cache/...)."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "benchharness" / "data"


def db_path(explicit: Path | None = None) -> Path:
    """``--db PATH`` if given, else ``$BENCH_DB``, else ``results/bench.duckdb``."""
    if explicit is not None:
        return explicit
    env = os.environ.get(DB_ENV)
    return Path(env) if env else DEFAULT_DB


def cache_dir(db: Path) -> Path:
    """Reference-model cache, kept next to the database it belongs to."""
    return db.parent / "cache"
