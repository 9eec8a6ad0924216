"""Runs jobs on the available devices and saves each result the moment it arrives.

Only this (parent) process writes to the database: each finished job is saved in its
own transaction, so a crash or kill loses at most the jobs in flight. With one device
and no timeout the jobs run in the parent process itself (no process overhead,
in-process plugins visible); otherwise each device gets a spawned worker
(:mod:`benchharness.workers`). Jobs that may train together are handed out as one unit
(:mod:`benchharness.grouped_runner`); each still gets its own record.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchharness import datacache, preflight
from benchharness.allocator import retain_freed_memory
from benchharness.errors import BenchError
from benchharness.grouped_runner import run_unit, units
from benchharness.interrupts import deferred_interrupts
from benchharness.matrix import Job
from benchharness.plugins import Registry, get_registry
from benchharness.progress import StudyProgress
from benchharness.records import RunRecord
from benchharness.workers import run_in_workers

Save = Callable[[RunRecord], Any]


def parse_devices(spec: str) -> list[torch.device]:
    """``auto`` (every GPU, else the CPU), ``cpu``, or a comma list such as ``cuda:0,cuda:1``.

    Repeating ``cpu`` (``cpu,cpu``) runs that many CPU workers, splitting the cores.
    """
    spec = spec.strip()
    if spec == "auto":
        if torch.cuda.is_available():
            return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return [torch.device("cpu")]
    devices = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        try:
            device = torch.device(item)
        except RuntimeError:
            raise BenchError(
                f"--devices: '{item}' is not a device (use auto, cpu, cuda:0, ...)"
            ) from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise BenchError(f"--devices: '{item}' requested but CUDA is not available here")
            if device.index is not None and device.index >= torch.cuda.device_count():
                raise BenchError(
                    f"--devices: '{item}' does not exist ({torch.cuda.device_count()} GPUs)"
                )
        devices.append(device)
    if not devices:
        raise BenchError("--devices: no device given")
    return devices


def threads_per_worker(workers: int, budget: int | None = None) -> int:
    """Torch intra-op threads for each of ``workers`` job-running processes: ``budget``
    split evenly, at least 1. The budget defaults to this process's torch thread count
    (torch's default of one per physical core, or what ``OMP_NUM_THREADS`` or
    ``torch.set_num_threads`` chose). The inline path (one device: one worker, the full
    budget) and spawned workers use this one rule, so their latencies compare; each
    run stores its count as ``torch_threads``."""
    total = torch.get_num_threads() if budget is None else budget
    return max(1, total // max(workers, 1))


def execute(
    jobs: list[Job],
    *,
    devices: list[torch.device],
    save: Save,
    data_dir: Path,
    cache_dir: Path,
    registry: Registry | None = None,
    progress: StudyProgress | None = None,
    timeout: float | None = None,
    max_failures: int | None = None,
    jobs_per_device: int | str = 1,
    group_seeds: bool = True,
) -> list[RunRecord]:
    """Run ``jobs``, calling ``save(record)`` for each as soon as it finishes; return the
    records in the order they finished.

    Every dataset is loaded (downloaded if missing) once before any job starts, so a
    missing dataset raises one :class:`BenchError` instead of failing every job.

    ``timeout`` (seconds) stops a job that runs longer: it is stored as failed ("timed
    out after N s") and the study goes on. Only a process can be stopped reliably, so
    with a timeout even a single device runs its jobs in a worker process (which sees
    installed plugins only, not ones registered in this process). Once ``max_failures``
    jobs have failed no new job starts; the running ones finish, the others get no
    record (fewer records than jobs). ``jobs_per_device`` (a positive int or ``auto``)
    runs that many jobs at once on each device, one worker each (:mod:`.packing`).

    ``group_seeds`` (``[run] group_seeds``, ``--no-group``) hands out the jobs that may
    train as one fused model as one unit (:func:`benchharness.grouped_runner.units`),
    trained fused where a measured probe says it is faster. A unit is one piece of work:
    its jobs are stored one by one as they finish; ``--max-failures`` is checked between
    units; a unit of ``k`` jobs has ``k`` times the per-job ``timeout``, and its jobs not
    finished by then are stored as timed out.
    """
    registry = registry or get_registry()
    datacache.prepare([job.config for job in jobs], registry, data_dir)
    preflight.check_jobs(jobs, registry, data_dir, cache_dir)  # data-dependent spec checks
    if jobs_per_device != 1:
        devices = _pack(jobs, devices, jobs_per_device, registry, data_dir)
    progress = progress or StudyProgress(len(jobs), len(devices))
    study = _Study(save, progress, max_failures)
    threads = threads_per_worker(len(devices))
    work = units(jobs, group=group_seeds)
    try:
        if len(devices) == 1 and timeout is None:
            _execute_inline(work, devices[0], threads, study, data_dir, cache_dir, registry)
        else:
            _execute_workers(work, devices, threads, study, data_dir, cache_dir, timeout)
        return study.records
    finally:
        progress.close()


def _pack(
    jobs: list[Job],
    devices: list[torch.device],
    jobs_per_device: int | str,
    registry: Registry,
    data_dir: Path,
) -> list[torch.device]:
    """The devices repeated once per job slot (:func:`benchharness.packing.slots`)."""
    from benchharness import packing

    gpus = any(device.type == "cuda" for device in devices)
    job_bytes = (
        packing.largest_job_footprint(jobs, registry, data_dir)
        if jobs_per_device == "auto" and gpus
        else 0
    )
    return packing.slots(
        devices,
        jobs_per_device,
        cpu_threads=torch.get_num_threads(),
        free_memory=packing.cuda_free_memory,
        job_bytes=job_bytes,
    )


class _Study:
    """What the finished jobs of one ``execute`` call add up to."""

    def __init__(self, save: Save, progress: StudyProgress, max_failures: int | None):
        self.save = save
        self.progress = progress
        self.max_failures = max_failures
        self.records: list[RunRecord] = []
        self.failures = 0

    def finish(self, record: RunRecord) -> None:
        """Save a finished job at once (its own transaction, never cut short by Ctrl-C or
        SIGTERM), then show it."""
        with deferred_interrupts():
            outcome = self.save(record)
        self.records.append(record)
        self.failures += record.status != "completed"
        self.progress.job_finished(record, kept_earlier=outcome == "kept_completed")

    def stopping(self) -> bool:
        return self.max_failures is not None and self.failures >= self.max_failures


def _execute_workers(
    work: list[list[Job]],
    devices: list[torch.device],
    threads: int,
    study: _Study,
    data_dir: Path,
    cache_dir: Path,
    timeout: float | None,
) -> None:
    run_in_workers(
        work,
        devices,
        threads=threads,
        data_dir=data_dir,
        cache_dir=cache_dir,
        finish=study.finish,
        stopping=study.stopping,
        progress=study.progress,
        timeout=timeout,
    )


def _execute_inline(
    work: list[list[Job]],
    device: torch.device,
    threads: int,
    study: _Study,
    data_dir: Path,
    cache_dir: Path,
    registry: Registry,
) -> None:
    torch.set_num_threads(threads)
    retain_freed_memory()  # see benchharness.allocator: steps stop page-faulting
    for unit in work:
        if study.stopping():
            return
        for job in unit:
            study.progress.job_started_event(job)
        for record in run_unit(
            unit,
            registry=registry,
            device=device,
            data_dir=data_dir,
            cache_dir=cache_dir,
            events=study.progress.event,
        ):
            study.finish(record)
