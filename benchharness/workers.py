"""Worker processes, one per device, that the parent feeds one unit of work at a time:
one job, or a group of jobs trained together (:mod:`benchharness.grouped_runner`).

Each worker runs on one device and has its own pipe to the parent, so a worker can be
stopped (its unit ran past the timeout) or lost (a segfault, an OOM kill) without
touching anyone else's messages: the unit's unfinished jobs are stored as failed, and a
fresh worker takes the device's next unit. The parent hands out every unit itself, so it
can simply stop handing them out (``--max-failures``). Workers ignore SIGINT and SIGTERM:
the parent decides when they stop, and exits if they have to.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from benchharness import datacache
from benchharness.allocator import retain_freed_memory
from benchharness.grouped_runner import run_unit
from benchharness.matrix import Job
from benchharness.plugins import get_registry
from benchharness.progress import StudyProgress
from benchharness.records import RunRecord
from benchharness.runner import failed_record

Finish = Callable[[RunRecord], None]


@dataclasses.dataclass
class _Slot:
    """One worker process and the jobs of its unit it has not reported yet."""

    device: torch.device
    process: Any  # a SpawnProcess
    conn: Connection
    ready: bool = False  # imported everything, waiting for a unit
    jobs: list[Job] = dataclasses.field(default_factory=list)
    handed_over: float = 0.0  # time.monotonic() when the unit was sent
    deadline: float = 0.0  # seconds after handed_over the unit may run (with a timeout)
    started_at: datetime | None = None


def run_in_workers(
    work: list[list[Job]],
    devices: list[torch.device],
    *,
    threads: int,
    data_dir: Path,
    cache_dir: Path,
    finish: Finish,
    stopping: Callable[[], bool],
    progress: StudyProgress,
    timeout: float | None = None,
) -> None:
    """Run the units of ``work`` on one worker process per entry of ``devices``, calling
    ``finish`` with each job's record (completed, failed, timed out or lost with its
    worker).

    A unit of ``k`` jobs still running ``k·timeout`` seconds after it was handed over is
    stopped: its worker is killed and replaced, and its unreported jobs are stored as
    timed out. When a worker dies in a unit of several jobs, its unreported jobs are
    handed out again one by one, so a crash fails only the job that crashes alone. Once
    ``stopping()`` is true no further unit is handed out; the running ones finish. Jobs
    never handed out get no record.
    """
    ctx = _context()
    pending = collections.deque(work)
    datasets = _distinct_datasets([job for unit in work for job in unit])

    def start(device: torch.device) -> _Slot:
        ours, theirs = ctx.Pipe()
        process = ctx.Process(
            target=_worker_main,
            args=(device, threads, theirs, data_dir, cache_dir, datasets),
            daemon=True,
        )
        process.start()
        theirs.close()  # so that the worker's death reads as end-of-file here
        return _Slot(device, process, ours)

    def wanted() -> bool:
        return bool(pending) and not stopping()

    slots = [start(device) for device in devices]
    try:
        while True:
            for slot in slots:
                if slot.ready and not slot.jobs and wanted():
                    _hand_over(slot, pending.popleft(), progress, timeout)
            busy = [slot for slot in slots if slot.jobs]
            if not busy and not (wanted() and slots):
                return
            ready = wait(
                [s.conn for s in slots] + [s.process.sentinel for s in slots],
                timeout=_until_first_deadline(busy, timeout),
            )
            for slot in list(slots):
                if slot.conn in ready:
                    _drain(slot, finish, progress)
                gone = slot.process.sentinel in ready
                overdue = timeout is not None and bool(slot.jobs) and _overdue(slot)
                if not (gone or overdue):
                    continue
                if overdue:
                    slot.process.kill()
                slot.process.join()
                _drain(slot, finish, progress)  # a result sent just before the end counts
                if len(slot.jobs) > 1 and not overdue:
                    # a group died (perhaps of training fused): its jobs go on alone
                    pending.extendleft([job] for job in reversed(slot.jobs))
                    slot.jobs = []
                    if wanted():
                        slots.append(start(slot.device))
                elif slot.jobs:
                    error = (
                        f"timed out after {slot.deadline:g} s"
                        if overdue
                        else f"worker process died with exit code {slot.process.exitcode}"
                    )
                    _fail(slot, error, finish)
                    if wanted():  # the device goes on with a fresh worker
                        slots.append(start(slot.device))
                slot.conn.close()
                slots.remove(slot)
    finally:
        _stop(slots)


def _context() -> Any:
    """Fork workers from a server process that has imported torch and the runner once
    (fast to replace a worker after a timeout); spawn them where there is no forkserver.
    Either way a worker starts clean: no threads, CUDA state or plugins of this process."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["benchharness.workers", "torch._dynamo"])
    return ctx


def _distinct_datasets(jobs: list[Job]) -> list[dict[str, Any]]:
    """The dataset and data sections the jobs use, each once: what a worker loads before
    it takes a job, so that a job's timeout does not count the worker's warm-up."""
    distinct = {}
    for job in jobs:
        section = {"dataset": job.config["dataset"], "data": job.config.get("data")}
        distinct[json.dumps(section, sort_keys=True, default=str)] = section
    return list(distinct.values())


def _hand_over(
    slot: _Slot, unit: list[Job], progress: StudyProgress, timeout: float | None
) -> None:
    slot.jobs = list(unit)
    slot.handed_over = time.monotonic()
    slot.deadline = (timeout or 0.0) * len(unit)
    slot.started_at = datetime.now(UTC)
    for job in unit:
        progress.job_started_event(job)
    slot.conn.send(list(unit))


def _overdue(slot: _Slot) -> bool:
    return time.monotonic() - slot.handed_over >= slot.deadline


def _until_first_deadline(busy: list[_Slot], timeout: float | None) -> float | None:
    if timeout is None or not busy:
        return None
    first = min(slot.handed_over + slot.deadline for slot in busy)
    return max(0.0, first - time.monotonic())


def _drain(slot: _Slot, finish: Finish, progress: StudyProgress) -> None:
    """Handle every message the worker has sent so far."""
    while True:
        try:
            if slot.conn.closed or not slot.conn.poll():
                return
            message = slot.conn.recv()
        except (EOFError, OSError):  # the worker is gone (perhaps mid-message)
            return
        kind = message[0]
        if kind == "ready":
            slot.ready = True
        elif kind == "event":
            progress.event(message[1])
        elif kind == "done" and any(job.id == message[1].job_id for job in slot.jobs):
            slot.jobs = [job for job in slot.jobs if job.id != message[1].job_id]
            finish(message[1])


def _fail(slot: _Slot, error: str, finish: Finish) -> None:
    """Store every unreported job of the slot's unit as failed with ``error``."""
    jobs, slot.jobs = slot.jobs, []
    for job in jobs:
        record = failed_record(job, started_at=slot.started_at or datetime.now(UTC), error=error)
        record.provenance["device"] = str(slot.device)
        record.finished_at = datetime.now(UTC)
        finish(record)


def _stop(slots: list[_Slot]) -> None:
    """Idle workers end when their pipe closes; busy ones (an interruption) are killed."""
    for slot in slots:
        if slot.jobs:
            slot.process.kill()
        slot.conn.close()
    for slot in slots:
        slot.process.join(timeout=5)
        if slot.process.is_alive():
            slot.process.kill()
            slot.process.join()


# ------------------------------------------------------------------ the worker side


def _worker_main(
    device: torch.device,
    threads: int,
    conn: Connection,
    data_dir: Path,
    cache_dir: Path,
    datasets: list[dict[str, Any]],
) -> None:
    """Worker process: load the study's datasets, say ready, then run each unit of jobs
    the parent sends until it sends ``None`` or closes the pipe."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    _exit_with_parent()
    torch.set_num_threads(threads)
    retain_freed_memory()  # see benchharness.allocator: steps stop page-faulting
    registry = get_registry()
    datacache.prepare(datasets, registry, data_dir)
    # FLOP counting imports torch._dynamo on first use (seconds): import it before the
    # first job's timeout starts (a no-op where the forkserver preloaded it)
    importlib.import_module("torch._dynamo")
    conn.send(("ready",))
    while True:
        try:
            unit = conn.recv()
        except (EOFError, OSError):
            return
        if unit is None:
            return
        for record in run_unit(
            unit,
            registry=registry,
            device=device,
            data_dir=data_dir,
            cache_dir=cache_dir,
            events=lambda event: conn.send(("event", event)),
        ):
            conn.send(("done", record))


def _exit_with_parent(interval: float = 1.0) -> None:
    """End this worker if its parent dies (a SIGKILL leaves no chance to stop us)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
