"""`bench`: a thin typer layer over spec → matrix → executor → store → report.

This is the only place errors become messages and exit codes: 0 fine, 1 some jobs
failed, 2 bad input (spec, options, files), 130 interrupted, 143 terminated (SIGTERM).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from benchharness import settings
from benchharness.errors import BenchError
from benchharness.interrupts import Terminated, sigterm_as_interrupt

if TYPE_CHECKING:
    from benchharness.matrix import Plan
    from benchharness.plugins import Registry

app = typer.Typer(
    help="Declarative benchmark harness for neural-network efficiency research.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


def literal(text: str) -> str:
    """Help text shown as written: typer's rich markup would eat ``[quick]`` and
    ``[default: ...]`` as style tags."""
    try:
        from rich.markup import escape
        from typer.core import HAS_RICH
    except ImportError:  # plain click help: no markup
        return text
    return escape(text) if HAS_RICH else text


DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db", help=literal("results database [default: $BENCH_DB or results/bench.duckdb]")
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a spec value: KEY=VALUE (TOML value), repeatable"),
]
YesOption = Annotated[
    bool,
    typer.Option("--yes", help="expand a matrix of over 10,000 jobs without asking"),
]
QuickOption = Annotated[
    bool,
    typer.Option("--quick", help=literal("smoke scale: the spec's [quick] overrides and one seed")),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo("\n".join(map(_printable, message.split("\n"))), err=True)
    return typer.Exit(code)


def _printable(line: str) -> str:
    """``line`` with unprintable characters escaped: a value quoted from a spec may hold a
    line separator (U+0085, U+2028, a form feed) that would split a one-line message."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in line)


def registry() -> Registry:
    """The plugin registry; one warning line on stderr per entry point that failed to load
    (its plugins are missing, the others work)."""
    from benchharness.plugins import get_registry

    loaded = get_registry()
    for line in loaded.broken:
        typer.echo(f"warning: {line}; its plugins are not available", err=True)
    return loaded


def handles_errors(fn: F) -> F:
    """Turn BenchError into its one-line message and exit code; Ctrl-C into 130, and
    SIGTERM (where a command turns it into :class:`Terminated`) into 143 = 128 + 15, the
    code of a process ended by SIGTERM, so a batch scheduler sees what stopped it."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BenchError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt as exc:
            by, code = (" by SIGTERM", 143) if isinstance(exc, Terminated) else ("", 130)
            raise _fail(
                f"interrupted{by}: every finished job is saved; run the same command to resume",
                code,
            ) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@handles_errors
@sigterm_as_interrupt()
def run(
    spec: Annotated[Path, typer.Argument(help="the study's TOML spec")],
    set_: SetOption = None,
    quick: QuickOption = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the expanded jobs and stop")
    ] = False,
    yes: YesOption = False,
    force: Annotated[bool, typer.Option("--force", help="rerun jobs already completed")] = False,
    devices: Annotated[
        str, typer.Option("--devices", help="auto | cpu | cuda:0,cuda:1 (one worker each)")
    ] = "auto",
    db: DbOption = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help=literal("datasets [default: $BENCH_DATA_DIR or ~/.cache/benchharness/data]"),
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            help=literal(
                "stop a job after this many minutes and store it as failed (timed out); "
                "jobs then run in worker processes [default: the spec's run.timeout_minutes]"
            ),
        ),
    ] = None,
    max_failures: Annotated[
        int | None,
        typer.Option(
            "--max-failures",
            help="start no new job once this many jobs have failed in this run (exit 1)",
        ),
    ] = None,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="also rerun the jobs stored as failed (skipped by default)",
        ),
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            "--executor",
            help=literal(
                "local (this machine's --devices) | ray (one Ray task per job, "
                "asking for the spec's [resources]; pip install 'benchharness[ray]')"
            ),
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster to use (auto, ray://host:10001); default: start a local one",
        ),
    ] = None,
) -> None:
    """Run (or resume) a study: every job of the spec's matrix not yet in the database
    (jobs stored as failed only with --retry-failed)."""
    from benchharness.executor import execute, parse_devices
    from benchharness.leases import Leases, describe_runners
    from benchharness.matrix import describe_job
    from benchharness.progress import StudyProgress
    from benchharness.store import Store

    plugin_registry = registry()
    plan = _plan(spec, set_, quick, yes, plugin_registry)
    if dry_run:  # streamed: a large matrix is never held as jobs
        for i, job in enumerate(plan.jobs(), 1):
            typer.echo(f"{i:>4}/{len(plan)} {describe_job(job)}")
        return
    parsed, jobs = plan.spec, list(plan.jobs())
    if executor not in ("local", "ray"):
        raise BenchError(f"--executor: must be local or ray, got '{executor}'")
    if address is not None and executor != "ray":
        raise BenchError("--address: only with --executor ray")
    if executor == "ray":
        from benchharness.ray_executor import import_ray

        import_ray()  # before anything is written: one line saying how to install it
    device_list = parse_devices(devices)
    timeout_seconds = _timeout_seconds(timeout, parsed.run.get("timeout_minutes"))
    if max_failures is not None and max_failures < 1:
        raise BenchError(f"--max-failures: must be at least 1, got {max_failures}")
    db_path = settings.db_path(db)
    store = Store(db_path)
    store.save_claims(parsed.name, parsed.claims)
    with Leases(db_path) as leases:
        todo, done, elsewhere = _claim_jobs(jobs, store, leases, force=force)
        failed_before = set() if force or retry_failed else _failed_ids(store, todo)
        todo = [job for job in todo if job.id not in failed_before]
        skipped = (
            f"{len(failed_before)} failed earlier (not rerun without --retry-failed), "
            if failed_before
            else ""
        )
        typer.echo(
            f"{parsed.name}: {len(jobs)} jobs, {len(done)} already completed, {skipped}"
            f"{len(todo)} to run on "
            + (
                f"Ray ({address or 'local'}; {_describe_resources(parsed.resources)})"
                if executor == "ray"
                else ", ".join(map(str, device_list))
            )
            + f"; results in {db_path}",
            err=True,
        )
        if elsewhere:
            typer.echo(
                f"{len(elsewhere)} jobs are being run by another `bench run`"
                f" ({describe_runners(leases.others())}) and are left to it; run this"
                " command again when it has finished to pick up any it did not complete",
                err=True,
            )
        if not todo:
            if failed_before:  # the study is not all completed
                raise typer.Exit(1)
            return
        try:
            if executor == "ray":
                from benchharness.ray_executor import execute_ray

                records = execute_ray(
                    todo,
                    save=store.save,
                    data_dir=data_dir or settings.data_dir(),
                    cache_dir=settings.cache_dir(db_path),
                    registry=plugin_registry,
                    progress=StudyProgress(len(todo), 1),
                    timeout=timeout_seconds,
                    max_failures=max_failures,
                    address=address,
                    cpus_per_job=parsed.resources.get("cpus_per_job", 1.0),
                    gpus_per_job=parsed.resources.get("gpus_per_job", 0.0),
                )
            else:
                records = execute(
                    todo,
                    devices=device_list,
                    save=store.save,
                    data_dir=data_dir or settings.data_dir(),
                    cache_dir=settings.cache_dir(db_path),
                    registry=plugin_registry,
                    progress=StudyProgress(len(todo), len(device_list)),
                    timeout=timeout_seconds,
                    max_failures=max_failures,
                    jobs_per_device=parsed.resources.get("jobs_per_device", 1),
                )
        finally:
            _write_waiting_results(store)
    failed = [r for r in records if r.status != "completed"]
    missing = len(todo) - len(records)
    stopped = max_failures is not None and len(failed) >= max_failures
    typer.echo(
        f"{len(records) - len(failed)} completed, {len(failed)} failed"
        + (f", {missing} not run (workers died)" if missing and not stopped else ""),
        err=True,
    )
    for record in failed:
        typer.echo(f"  failed {record.job_id}: {record.error_line()}", err=True)
    if stopped and missing:
        typer.echo(
            f"stopped after {len(failed)} failed jobs (--max-failures {max_failures}): "
            f"{missing} jobs not started; run the same command to resume them "
            "(add --retry-failed to rerun the failed ones too)",
            err=True,
        )
    if failed or missing or failed_before:
        raise typer.Exit(1)


def _describe_resources(resources: dict[str, Any]) -> str:
    cpus, gpus = resources.get("cpus_per_job", 1.0), resources.get("gpus_per_job", 0.0)
    return f"{cpus:g} CPUs" + (f", {gpus:g} GPUs" if gpus else "") + " per job"


def _timeout_seconds(option: float | None, spec_minutes: float | None) -> float | None:
    """The per-job timeout in seconds: ``--timeout`` (minutes) wins over the spec's."""
    minutes = option if option is not None else spec_minutes
    if minutes is None:
        return None
    if not (math.isfinite(minutes) and minutes > 0):
        raise BenchError(f"--timeout: must be a positive number of minutes, got {minutes}")
    return minutes * 60


def _failed_ids(store: Any, jobs: list[Any]) -> set[str]:
    """The ids of ``jobs`` stored as failed: a failure is a result too (a job that timed
    out or diverged would only do it again), so a resume skips them unless told."""
    if not jobs:
        return set()
    runs = store.runs(jobs[0].spec_name)
    return set(runs.loc[runs["status"] == "failed", "job_id"]) & {job.id for job in jobs}


def _claim_jobs(jobs: list[Any], store: Any, leases: Any, *, force: bool) -> tuple[list, set, list]:
    """(jobs to run here, ids already completed, ids another live run holds).

    A job is claimed before its completion is checked: a result another run stored before
    it let go of the job is then seen, so no job is trained twice."""
    done = set() if force else store.completed_ids(job.id for job in jobs)
    mine, elsewhere = leases.claim(job.id for job in jobs if job.id not in done)
    if not force:
        done |= store.completed_ids(mine)
    todo = [job for job in jobs if job.id in set(mine) - done]
    return todo, done, elsewhere


def _write_waiting_results(store: Any) -> None:
    """Results left in the journal while another process held the database are written
    now; if it still holds it, say where they wait (nothing is lost either way)."""
    if store.sync() is None:
        typer.echo(
            f"warning: {store.path} is still held by another process; the last results wait"
            f" in {store.journal.path} and are written by the next `bench` command",
            err=True,
        )


@app.command()
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


@app.command(name="import")
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


@app.command()
@handles_errors
def recover(db: DbOption = None) -> None:
    """Check the results database; if it cannot be read in full, move it aside and
    rebuild it from its journal (<db>.journal). Also writes results waiting in the journal."""
    from benchharness.store import Store

    typer.echo(Store(settings.db_path(db), on_notice=lambda _message: None).recover())


@app.command()
@handles_errors
def validate(
    spec: Annotated[Path, typer.Argument(help="the study's TOML spec")],
    set_: SetOption = None,
    quick: QuickOption = False,
    yes: YesOption = False,
) -> None:
    """Check a spec (every expanded job, and its [quick] version) without running anything."""
    plan = _plan(spec, set_, quick, yes, registry())
    typer.echo(f"{spec}: ok — {len(plan)} jobs ({len(plan.configs)} configurations × seeds)")


def _plan(
    spec: Path, set_: list[str] | None, quick: bool, yes: bool, plugin_registry: Registry
) -> Plan:
    """The spec's validated plan; a matrix over LARGE_MATRIX jobs needs --yes or a "y"."""
    from benchharness.matrix import LARGE_MATRIX, MatrixTooLarge, plan_jobs

    try:
        return plan_jobs(
            spec,
            plugin_registry,
            overrides=set_ or (),
            quick=quick,
            max_jobs=None if yes else LARGE_MATRIX,
        )
    except MatrixTooLarge as error:
        if not sys.stdin.isatty():
            raise BenchError(f"{error}; pass --yes to expand it anyway") from None
        if not typer.confirm(f"{error}. Expand it?", err=True):
            raise BenchError(f"{error}; not confirmed") from None
    return plan_jobs(spec, plugin_registry, overrides=set_ or (), quick=quick)


@app.command()
@handles_errors
def plugins(
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="only this kind (dataset, transform, model, optimizer, compressor)"
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """List every plugin by kind, with its parameters, defaults and descriptions."""
    from benchharness.plugin_listing import describe_plugins, render_plugins
    from benchharness.plugins import KINDS

    if kind is not None and kind not in KINDS:
        raise BenchError(f"--kind: unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if fmt not in ("table", "json"):
        raise BenchError(f"--format: must be table or json, got '{fmt}'")
    listing = describe_plugins(registry(), kind)
    if fmt == "json":
        typer.echo(json.dumps(listing, indent=2))
    else:
        render_plugins(listing, sys.stdout)


@app.command()
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
        from benchharness.report.failed import failed_runs, render_failed

        typer.echo(render_failed(failed_runs(store, spec), fmt))
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
        from benchharness.report.claims import claims_table, render_claims

        typer.echo(render_claims(claims_table(store, spec=spec), fmt))
        return
    shown = None if wide or fmt in ("csv", "json") else list(reporting.TABLE_METRICS)
    table = reporting.summarize(
        store,
        spec=spec,
        objectives=parsed,
        pareto=pareto and not noise,
        metrics=shown,
        replicate_axes=[a.strip() for a in (replicate_axes or "").split(",") if a.strip()],
    )
    if noise:
        from benchharness.report.noise import noisy_front

        table = noisy_front(store, table)
        if pareto:
            table = table[table["dominance"] != "clear"]
    from benchharness.report.text import terminal_width

    typer.echo(reporting.render(table, fmt, wide=wide, width=terminal_width()))
    if fmt in ("table", "markdown") and not pareto:
        from benchharness.report.claims import claims_table, render_claims

        found = claims_table(store, spec=spec)
        if not found.empty:
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


def main() -> None:  # pragma: no cover - console entry point
    app()
