"""`bench report`: every report, table, plot and HTML file over the results database."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from benchharness import settings
from benchharness.errors import BenchError

if TYPE_CHECKING:
    pass

from benchharness.cli.common import (
    DbOption,
    handles_errors,
)


@handles_errors
def report(
    db: DbOption = None,
    spec: Annotated[str | None, typer.Option("--spec", help="only this spec name")] = None,
    pareto: Annotated[
        bool, typer.Option("--pareto", help="only the configurations on the Pareto front")
    ] = False,
    objectives: Annotated[
        str | None, typer.Option("--objectives", help="e.g. accuracy:max,flops:min")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | csv | json | markdown")] = "table",
    sql: Annotated[
        str | None, typer.Option("--sql", help="run a read-only SQL query instead")
    ] = None,
    wide: Annotated[
        bool, typer.Option("--wide", help="table/markdown: every metric, not just the main ones")
    ] = False,
    failed: Annotated[
        bool,
        typer.Option("--failed", help="list the failed runs: spec, job id, axes, error line"),
    ] = False,
    job: Annotated[
        str | None,
        typer.Option("--job", help="one run's stored error and traceback (a job id or prefix)"),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="write the front and curve plots (PNG, SVG) into this dir"),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option("--html", help="write a self-contained HTML report to this file"),
    ] = None,
    claims: Annotated[
        bool, typer.Option("--claims", help="only the claims vs measured, with verdicts")
    ] = False,
    compare: Annotated[
        tuple[str, str] | None,
        typer.Option(
            "--compare",
            help="two configurations (id or axis values like model.width=1,transform.ratio=0.3)",
        ),
    ] = None,
    noise: Annotated[
        bool,
        typer.Option("--noise", help="add P(on front) under seed noise and 'within noise' marks"),
    ] = False,
    replicate_axes: Annotated[
        str | None,
        typer.Option(
            "--replicate-axes",
            help="axes treated like seeds when grouping, e.g. compressor.draw (comma-separated)",
        ),
    ] = None,
    curves: Annotated[
        bool,
        typer.Option("--curves", help="per-epoch curves: mean ± SE over seeds per configuration"),
    ] = False,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="compare the fronts with another database: hypervolume, entered/left",
        ),
    ] = None,
) -> None:
    """Results grouped by configuration over seeds (mean ± SE, n), Pareto front in SQL."""
    from benchharness import report as reporting
    from benchharness.store import Store

    store = Store(settings.db_path(db))
    if job is not None:
        from benchharness.report.failed import failed_job

        typer.echo(failed_job(store, job))
        return
    if failed:
        from benchharness.report.failed import failed_rows, render_failed

        typer.echo(render_failed(failed_rows(store, spec), fmt))
        return
    if sql is not None:
        typer.echo(reporting.run_sql(store, sql, fmt))
        return
    parsed = [o.strip() for o in objectives.split(",")] if objectives else None
    if plot is not None or html is not None:  # files instead of the table
        if replicate_axes:
            raise BenchError("--replicate-axes does not apply to --plot/--html yet")
        _write_report_files(store, plot, html, spec, parsed)
        return
    if compare is not None:
        from benchharness.report.compare import compare as compare_configs

        found = compare_configs(store, *compare, spec=spec, objectives=parsed)
        typer.echo(reporting.render(found, fmt))
        return
    if curves:
        from benchharness.report.curves import curve_summary

        typer.echo(reporting.render(curve_summary(store, spec=spec), fmt))
        return
    if against is not None:
        from benchharness.report.against import against as against_front

        if not against.exists():
            raise BenchError(f"--against: no results database at {against}")
        found = against_front(store, Store(against), spec=spec, objectives=parsed)
        typer.echo(reporting.render(found, fmt))
        return
    if claims:
        from benchharness.report.claims import claims_rows, render_claims

        typer.echo(render_claims(claims_rows(store, spec=spec), fmt))
        return
    from benchharness.report.aggregate import summary_table
    from benchharness.report.claims import claims_rows, render_claims

    shown = None if wide or fmt in ("csv", "json") else list(reporting.TABLE_METRICS)
    replicates = [a.strip() for a in (replicate_axes or "").split(",") if a.strip()]
    found = None
    with store.reader() as db:  # one connection for the summary and the claims
        table: Any = summary_table(
            db,
            spec=spec,
            objectives=parsed,
            pareto=pareto and not noise,
            metrics=shown,
            replicate_axes=replicates,
        )
        if fmt in ("table", "markdown") and not pareto:
            # the claims' own summary is this one unless configurations were merged
            found = claims_rows(db, spec=spec, summary=None if replicates else table)
    if noise:
        from benchharness.report.noise import noisy_front

        table = noisy_front(store, table.to_frame())
        if pareto:
            table = table[table["dominance"] != "clear"]
    from benchharness.report.text import terminal_width

    typer.echo(reporting.render(table, fmt, wide=wide, width=terminal_width()))
    if found is not None and len(found):
        typer.echo("\nclaims vs measured (reproduced: |Δ| ≤ 2 combined SE)")
        typer.echo(render_claims(found, fmt))


def _write_report_files(
    store: Any, plot: Path | None, html: Path | None, spec: str | None, objectives: Any
) -> None:
    written: list[Path] = []
    if plot is not None:
        from benchharness.report.figures import write_plots

        written += write_plots(store, plot, spec=spec, objectives=objectives)
    if html is not None:
        from benchharness.report.html import write_html

        written.append(write_html(store, html, spec=spec, objectives=objectives))
    for path in written:
        typer.echo(f"wrote {path}")
