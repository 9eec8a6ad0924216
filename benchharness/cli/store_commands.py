"""`bench export`, `bench import`, `bench recover`: the results database as a whole."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from benchharness import settings
from benchharness.interrupts import sigterm_as_interrupt

if TYPE_CHECKING:
    pass

from benchharness.cli.common import (
    DbOption,
    handles_errors,
)


@handles_errors
def export(
    directory: Annotated[Path, typer.Argument(help="where to write runs, curves and claims")],
    fmt: Annotated[str, typer.Option("--format", help="parquet | csv")] = "parquet",
    spec: Annotated[str | None, typer.Option("--spec", help="only this spec name")] = None,
    db: DbOption = None,
) -> None:
    """Write the runs, curves and claims (of one spec) as Parquet or CSV files for sharing."""
    from benchharness.exchange import export as export_tables
    from benchharness.store import Store

    counts = export_tables(Store(settings.db_path(db)), directory, fmt, spec)
    typer.echo(
        f"wrote {counts['runs']} runs, {counts['curves']} curve points and {counts['claims']}"
        f" claims to {directory}"
    )


@handles_errors
@sigterm_as_interrupt()
def import_(
    paths: Annotated[list[Path], typer.Argument(help="databases (.duckdb) or export dirs")],
    db: DbOption = None,
) -> None:
    """Merge other databases or exports into this one by job id: identical results are
    skipped, conflicting ones listed (the existing row is kept). Exit 1 on a conflict."""
    from benchharness.exchange import import_paths
    from benchharness.store import Store

    result = import_paths(Store(settings.db_path(db)), paths)
    typer.echo(result.summary())
    for job_id, source, what in result.conflicts:
        typer.echo(f"  conflict {job_id} from {source}: {what}", err=True)
    if result.conflicts:
        raise typer.Exit(1)


@handles_errors
def recover(db: DbOption = None) -> None:
    """Check the results database; if it cannot be read in full, move it aside and
    rebuild it from its journal (<db>.journal). Also writes results waiting in the journal."""
    from benchharness.store import Store

    typer.echo(Store(settings.db_path(db), on_notice=lambda _message: None).recover())
