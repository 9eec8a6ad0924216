"""Worker processes, one per device, that the parent feeds one job at a time.

Each worker runs on one device and has its own pipe to the parent, so a worker can be
stopped (its job ran past the timeout) or lost (a segfault, an OOM kill) without
touching anyone else's messages: its job is stored as failed, and a fresh worker takes
the device's next job. The parent hands out every job itself, so it can simply stop
handing them out (``--max-failures``). Workers ignore SIGINT and SIGTERM: the parent
decides when they stop, and exits if they have to.
"""

from __future__ import annotations

import collections
import importlib
import json
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from benchharness import datacache
from benchharness.matrix import Job
from benchharness.plugins import get_registry
from benchharness.progress import StudyProgress
from benchharness.records import RunRecord
from benchharness.runner import failed_record, run_job

Finish = Callable[[RunRecord], None]


@dataclass
class _Slot:
    """One worker process and the job it is running, if any."""

    device: torch.device
    process: Any  # a SpawnProcess
    conn: Connection
    ready: bool = False  # imported everything, waiting for a job
    job: Job | None = None
    handed_over: float = 0.0  # time.monotonic() when ``job`` was sent
    started_at: datetime | None = None


def run_in_workers(
    jobs: list[Job],
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
    """Run ``jobs`` on one worker process per entry of ``devices``, calling ``finish``
    with each record (completed, failed, timed out or lost with its worker).

    A job still running ``timeout`` seconds after it was handed over is stopped: its
    worker is killed and replaced. Once ``stopping()`` is true no further job is handed
    out; the running ones finish. Jobs never handed out get no record.
    """
    ctx = _context()
    pending = collections.deque(jobs)
    datasets = _distinct_datasets(jobs)

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
                if slot.ready and slot.job is None and wanted():
                    _hand_over(slot, pending.popleft(), progress)
            busy = [slot for slot in slots if slot.job is not None]
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
                overdue = timeout is not None and slot.job is not None and _overdue(slot, timeout)
                if not (gone or overdue):
                    continue
                if overdue:
                    slot.process.kill()
                slot.process.join()
                _drain(slot, finish, progress)  # a result sent just before the end counts
                if slot.job is not None:
                    error = (
                        f"timed out after {timeout:g} s"
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


def _hand_over(slot: _Slot, job: Job, progress: StudyProgress) -> None:
    slot.job = job
    slot.handed_over = time.monotonic()
    slot.started_at = datetime.now(UTC)
    progress.job_started_event(job)
    slot.conn.send(job)


def _overdue(slot: _Slot, timeout: float) -> bool:
    return time.monotonic() - slot.handed_over >= timeout


def _until_first_deadline(busy: list[_Slot], timeout: float | None) -> float | None:
    if timeout is None or not busy:
        return None
    first = min(slot.handed_over for slot in busy) + timeout
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
        elif kind == "done" and slot.job is not None and message[1].job_id == slot.job.id:
            slot.job = None
            finish(message[1])


def _fail(slot: _Slot, error: str, finish: Finish) -> None:
    assert slot.job is not None
    record = failed_record(slot.job, started_at=slot.started_at or datetime.now(UTC), error=error)
    record.provenance["device"] = str(slot.device)
    record.finished_at = datetime.now(UTC)
    slot.job = None
    finish(record)


def _stop(slots: list[_Slot]) -> None:
    """Idle workers end when their pipe closes; busy ones (an interruption) are killed."""
    for slot in slots:
        if slot.job is not None:
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
    """Worker process: load the study's datasets, say ready, then run each job the parent
    sends until it sends ``None`` or closes the pipe."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    _exit_with_parent()
    torch.set_num_threads(threads)
    registry = get_registry()
    datacache.prepare(datasets, registry, data_dir)
    # FLOP counting imports torch._dynamo on first use (seconds): import it before the
    # first job's timeout starts (a no-op where the forkserver preloaded it)
    importlib.import_module("torch._dynamo")
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        record = run_job(
            job,
            registry=registry,
            device=device,
            data_dir=data_dir,
            cache_dir=cache_dir,
            events=lambda event: conn.send(("event", event)),
        )
        conn.send(("done", record))


def _exit_with_parent(interval: float = 1.0) -> None:
    """End this worker if its parent dies (a SIGKILL leaves no chance to stop us)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
