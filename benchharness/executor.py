"""Runs jobs on the available devices: one worker per device pulling from a job queue.

Only this (parent) process writes to the database: each finished job is saved in its
own transaction the moment it arrives, so a crash or kill loses at most the jobs in
flight. With one device the worker is the parent process itself (no process overhead,
in-process plugins visible); with several, each device gets a spawned process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchharness import datacache
from benchharness.errors import BenchError
from benchharness.jobcontext import Progress
from benchharness.matrix import Job
from benchharness.plugins import Registry, get_registry
from benchharness.progress import StudyProgress
from benchharness.records import RunRecord
from benchharness.runner import failed_record, run_job

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


@dataclass(frozen=True)
class _Paths:
    data_dir: Path
    cache_dir: Path


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
) -> list[RunRecord]:
    """Run ``jobs``, calling ``save(record)`` for each as soon as it finishes.

    Every dataset is loaded (downloaded if missing) once before any job starts, so a
    missing dataset raises one :class:`BenchError` instead of failing every job.
    """
    registry = registry or get_registry()
    datacache.prepare([job.config for job in jobs], registry, data_dir)
    progress = progress or StudyProgress(len(jobs), len(devices))
    paths = _Paths(data_dir, cache_dir)
    threads = threads_per_worker(len(devices))
    try:
        if len(devices) == 1:
            return _execute_inline(jobs, devices[0], threads, save, paths, registry, progress)
        return _execute_workers(jobs, devices, threads, save, paths, progress)
    finally:
        progress.close()


def _execute_inline(
    jobs: list[Job],
    device: torch.device,
    threads: int,
    save: Save,
    paths: _Paths,
    registry: Registry,
    progress: StudyProgress,
) -> list[RunRecord]:
    torch.set_num_threads(threads)
    records = []
    for job in jobs:
        progress.job_started_event(job)
        record = run_job(
            job,
            registry=registry,
            device=device,
            data_dir=paths.data_dir,
            cache_dir=paths.cache_dir,
            events=progress.event,
        )
        _finish(record, save, progress)
        records.append(record)
    return records


def _finish(record: RunRecord, save: Save, progress: StudyProgress) -> None:
    """Save a finished job at once (its own transaction), then show it."""
    outcome = save(record)
    progress.job_finished(record, kept_earlier=outcome == "kept_completed")


def _worker(device: torch.device, threads: int, tasks: Any, results: Any, paths: _Paths) -> None:
    """Worker process: run jobs from ``tasks`` on ``device``, send everything to ``results``."""
    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    registry = get_registry()
    while True:
        job = tasks.get()
        if job is None:
            return
        results.put(("start", job.id, os.getpid()))
        record = run_job(
            job,
            registry=registry,
            device=device,
            data_dir=paths.data_dir,
            cache_dir=paths.cache_dir,
            events=lambda e: results.put(("event", e)),
        )
        results.put(("done", record))


def _execute_workers(
    jobs: list[Job],
    devices: list[torch.device],
    threads: int,
    save: Save,
    paths: _Paths,
    progress: StudyProgress,
) -> list[RunRecord]:
    ctx = mp.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for job in jobs:
        tasks.put(job)
    for _ in devices:
        tasks.put(None)
    workers = [
        ctx.Process(target=_worker, args=(d, threads, tasks, results, paths), daemon=True)
        for d in devices
    ]
    for w in workers:
        w.start()
    by_id = {job.id: job for job in jobs}
    in_flight: dict[int, str] = {}  # worker pid -> job id
    records: list[RunRecord] = []
    try:
        while len(records) < len(jobs):
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                records += _reap_dead_workers(workers, in_flight, by_id, save, progress)
                if all(not w.is_alive() for w in workers) and results.empty():
                    break
                continue
            kind = message[0]
            if kind == "start":
                in_flight[message[2]] = message[1]
                progress.job_started_event(by_id[message[1]])
            elif kind == "event":
                event: Progress = message[1]
                progress.event(event)
            elif kind == "done":
                record: RunRecord = message[1]
                in_flight = {pid: jid for pid, jid in in_flight.items() if jid != record.job_id}
                _finish(record, save, progress)
                records.append(record)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join(timeout=5)
    return records


def _reap_dead_workers(
    workers: list[Any],
    in_flight: dict[int, str],
    by_id: dict[str, Job],
    save: Save,
    progress: StudyProgress,
) -> list[RunRecord]:
    """A worker that died mid-job (segfault, OOM kill) fails that job; the rest go on."""
    lost = []
    for w in workers:
        if w.is_alive() or w.pid not in in_flight:
            continue
        job = by_id[in_flight.pop(w.pid)]
        now = datetime.now(UTC)
        record = failed_record(
            job, started_at=now, error=f"worker process died with exit code {w.exitcode}"
        )
        record.finished_at = now
        _finish(record, save, progress)
        lost.append(record)
    return lost
