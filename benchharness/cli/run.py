"""`bench run`: run or resume a study (leases, journal, executors, timeouts, failures)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from benchharness import settings
from benchharness.errors import BenchError
from benchharness.interrupts import sigterm_as_interrupt

if TYPE_CHECKING:
    pass

from benchharness.cli.common import (
    DbOption,
    QuickOption,
    SetOption,
    YesOption,
    handles_errors,
    literal,
    registry,
)
from benchharness.cli.spec_commands import plan_spec


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
    no_group: Annotated[
        bool,
        typer.Option(
            "--no-group",
            help="train every job alone, never seeds together as one fused model "
            "[default: the spec's run.group_seeds, true]",
        ),
    ] = False,
) -> None:
    """Run (or resume) a study: every job of the spec's matrix not yet in the database
    (jobs stored as failed only with --retry-failed)."""
    from benchharness.matrix import describe_job

    plugin_registry = registry()
    plan = plan_spec(spec, set_, quick, yes, plugin_registry)
    if dry_run:  # streamed: a large matrix is never held as jobs
        for i, job in enumerate(plan.jobs(), 1):
            typer.echo(f"{i:>4}/{len(plan)} {describe_job(job)}")
        return
    # imported after the dry run, which needs none of them (the executor imports torch)
    from benchharness.executor import execute, parse_devices
    from benchharness.leases import Leases, describe_runners
    from benchharness.progress import StudyProgress
    from benchharness.store import Store

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
        failed_before = set() if force or retry_failed else store.failed_ids(job.id for job in todo)
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
                    group_seeds=parsed.run.get("group_seeds", True) and not no_group,
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
