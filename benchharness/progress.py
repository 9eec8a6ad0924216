"""What a running study shows: job i/N, the current job's phase and epoch, ETAs.

A live rich display on a terminal; one plain line per event elsewhere (CI logs, pipes).
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchharness.jobcontext import Progress as JobEvent
from benchharness.matrix import Job, describe_job
from benchharness.records import RunRecord


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return str(timedelta(seconds=int(max(seconds, 0))))


def _fmt_values(values: dict[str, float]) -> str:
    parts = []
    for name, value in values.items():
        if "accuracy" in name:
            parts.append(f"{name} {100 * value:.2f}%")
        elif name == "lr":
            parts.append(f"lr {value:.3g}")
        else:
            parts.append(f"{name} {value:.4g}")
    return " ".join(parts)


class StudyProgress:
    """Tracks finished jobs and running phases to print progress with ETAs."""

    def __init__(self, total: int, workers: int, *, live: bool | None = None, stream=None):
        self.total = total
        self.workers = max(workers, 1)
        self.done = 0
        self.started = time.monotonic()
        self.job_started: dict[str, float] = {}
        self.phase_started: dict[tuple[str, str], float] = {}
        self.last_event: dict[str, float] = {}
        # running job -> when its current phase is projected to end (while one is under way)
        self.phase_ends: dict[str, float] = {}
        self.index: dict[str, int] = {}
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._rich: Progress | None = None
        self._tasks: dict[str, int] = {}
        if self.live:
            self._rich = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(file=self.stream),
            )
            self._study_task = self._rich.add_task("jobs", total=total)
            self._rich.start()

    def _study_eta(self) -> float | None:
        now = time.monotonic()
        if self.done == 0:
            return self._first_wave_eta(now)
        per_job = (now - self.started) / self.done
        return per_job * (self.total - self.done) / self.workers

    def _first_wave_eta(self, now: float) -> float | None:
        """Before any job has finished: the running jobs that report progress (one per
        worker, or every member of a group training together) end when the last of their
        phases is projected to, and the study takes that long per as many jobs."""
        if not self.phase_ends:
            return None
        wave = max(self.phase_ends.values()) - self.started
        return wave * self.total / len(self.phase_ends) - (now - self.started)

    def _print(self, line: str) -> None:
        if self._rich is not None:
            self._rich.console.print(line)
        else:
            print(line, file=self.stream, flush=True)

    def job_started_event(self, job: Job) -> None:
        i = self.index.setdefault(job.id, len(self.index) + 1)  # a restarted job keeps its i
        self.job_started[job.id] = time.monotonic()
        self._print(f"[job {i}/{self.total}] start {describe_job(job)}")
        if self._rich is not None:
            self._tasks[job.id] = self._rich.add_task(f"  job {i}/{self.total}", total=None)

    def event(self, event: JobEvent) -> None:
        key = (event.job_id, event.phase)
        now = time.monotonic()
        # A phase starts when the job's previous event (or the job itself) ended.
        start = self.phase_started.setdefault(
            key, self.last_event.get(event.job_id, self.job_started.get(event.job_id, now))
        )
        self.last_event[event.job_id] = now
        eta = None
        if event.total and event.step > 0:
            eta = (now - start) / event.step * (event.total - event.step)
        if eta and event.job_id in self.job_started:
            self.phase_ends[event.job_id] = now + eta
        else:
            self.phase_ends.pop(event.job_id, None)
        i = self.index.get(event.job_id, 0)
        of = f"/{event.total}" if event.total else ""
        if self._rich is not None and event.job_id in self._tasks:
            self._rich.update(
                self._tasks[event.job_id],
                completed=event.step,
                total=event.total,
                description=f"  job {i}/{self.total} {event.phase} {event.step}{of}",
            )
        self._print(
            f"[job {i}/{self.total}] {event.phase} {event.step}{of} {_fmt_values(event.values)}"
            f" | job ETA {_fmt_eta(eta)} | study ETA {_fmt_eta(self._study_eta())}"
        )

    def job_finished(self, record: RunRecord, *, kept_earlier: bool = False) -> None:
        self.done += 1
        self.phase_ends.pop(record.job_id, None)
        i = self.index.get(record.job_id, self.done)
        took = time.monotonic() - self.job_started.get(record.job_id, time.monotonic())
        if record.status == "completed":
            acc = record.metrics.get("test_accuracy")
            result = f"test accuracy {100 * acc:.2f}%" if acc is not None else "completed"
        else:
            result = f"FAILED: {record.error_line()}"
            if kept_earlier:
                result += " (the earlier completed result is kept)"
        if self._rich is not None:
            task = self._tasks.pop(record.job_id, None)
            if task is not None:
                self._rich.remove_task(task)
            self._rich.update(self._study_task, completed=self.done)
        self._print(
            f"[job {i}/{self.total}] done in {took:.1f}s: {result}"
            f" | {self.done}/{self.total} finished, study ETA {_fmt_eta(self._study_eta())}"
        )

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
