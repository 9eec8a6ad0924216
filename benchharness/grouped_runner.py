"""Seeds trained together in the executor: a group of jobs trained as one fused model
(:mod:`benchharness.grouped`), each job then finishing its own pipeline.

The executor hands out *units*: a group of jobs that may train together
(:func:`~benchharness.grouped.grouping.group_jobs`), or one job. A group is prepared job
by job exactly as :func:`benchharness.runner.run_job` prepares one (data, seeded model,
context); when the members are fusible and the measured probe
(:func:`benchharness.grouped.probe.decide`, cached per process) says fused training is
faster here, they train fused — each member with its own initialisation, batch order,
learning-rate schedule, per-epoch test/validation curves and model selection — and each
unfused model then goes through the rest of its job's pipeline (compression, final
evaluation, measurements) with the global random state it would have had alone. A
member whose loss stops being finite is a failed job; the others go on. Otherwise each
job trains alone from its preparation, with the random state it had there, exactly as
without grouping; if the fused training itself fails, every job runs alone from the
start. Either way each job yields one record.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchharness.grouped import evaluate_members, fuse, fusible_reason, member_run, train_fused
from benchharness.grouped import probe as _probe
from benchharness.grouped.fused_net import FusedNet, member_slice, unfuse
from benchharness.grouped.grouping import MAX_MEMBERS, group_jobs
from benchharness.jobcontext import Events, Progress
from benchharness.matrix import Job
from benchharness.plugins import Registry
from benchharness.records import RunRecord
from benchharness.runner import (
    JobRun,
    capture,
    complete,
    failed_record,
    prepare,
    run_job,
    train_and_complete,
)
from benchharness.selection import SELECTION_PHASE, BestEpoch

__all__ = ["run_unit", "units"]


def units(jobs: Sequence[Job], *, group: bool, max_members: int = MAX_MEMBERS) -> list[list[Job]]:
    """The executor's units of work: candidate groups (``group``) or one job each."""
    if not group:
        return [[job] for job in jobs]
    return group_jobs(jobs, max_members=max_members)


def run_unit(
    jobs: Sequence[Job],
    *,
    registry: Registry,
    device: torch.device,
    data_dir: Path,
    cache_dir: Path,
    events: Events,
) -> Iterator[RunRecord]:
    """Run one unit, yielding each job's record as soon as it is final (never raising
    for a job's own failure)."""

    def alone(job: Job) -> RunRecord:
        return run_job(
            job,
            registry=registry,
            device=device,
            data_dir=data_dir,
            cache_dir=cache_dir,
            events=events,
        )

    if len(jobs) == 1:
        yield alone(jobs[0])
        return

    runs: list[JobRun] = []
    for job in jobs:
        record = failed_record(job, started_at=datetime.now(UTC))
        prepared: list[JobRun] = []
        step = functools.partial(
            _prepare_into, prepared, job, record, registry, device, data_dir, cache_dir, events
        )
        if capture(record, step, completes=False):
            runs.append(prepared[0])
        else:
            record.finished_at = datetime.now(UTC)
            yield record
    reason = _why_not_fused(runs)
    decision = None
    if reason is None:
        first = runs[0]
        decision = _probe.decide(
            [r.model for r in runs],
            first.data.train_x,
            first.data.train_y,
            batch_size=int(first.optimizer.options.batch_size),
            precision=first.ctx.precision,
        )
        if not decision.fuse:
            reason = decision.reason
    if reason is not None or decision is None:
        while runs:  # each as run_job would go on from its preparation
            r = runs.pop(0)  # dropped once done: its model and context are not held on
            r.restore_rng()
            capture(r.record, functools.partial(train_and_complete, r))
            r.record.finished_at = datetime.now(UTC)
            yield r.record
        return
    shown = {"members": float(len(runs)), "probe_speedup": decision.ratio or 0.0}
    for r in runs:
        events(Progress(r.job.id, "grouped", 1, 1, shown))
    try:
        trained, diverged, seconds = _train_together(runs, decision.channels_last)
    except Exception as exc:  # the engine failed (e.g. out of memory): train them alone
        problem = f"{type(exc).__name__}: {exc}"
        pending = [r.job for r in runs]
        runs.clear()
        for job in pending:
            record = alone(job)
            record.extra["train_group_error"] = problem
            yield record
        return
    for i, r in enumerate(runs):
        record = r.record
        record.extra.update(train_group_members=len(runs), train_group_seconds=seconds)
        if diverged[i] is not None:
            record.error = f"diverged: {diverged[i]}"
        else:
            r.restore_rng()  # as it would be after this job's training alone
            step = functools.partial(complete, r, trained[i], seconds / len(runs), False)
            capture(record, step)
        record.finished_at = datetime.now(UTC)
        trained[i] = None  # type: ignore[call-overload]
        yield record


def _prepare_into(into: list[JobRun], *args: Any) -> None:
    into.append(prepare(*args))


def _why_not_fused(runs: list[JobRun]) -> str | None:
    """Why these prepared jobs cannot train as one fused model, or ``None``."""
    if len(runs) < 2:
        return "fewer than two jobs to train together"
    for r in runs:
        if r.compressors or getattr(r.optimizer, "uses_compressors", False):
            return f"job {r.job.id} compresses: its training goes through the cache"
        if r.ctx.augmentation is not None:
            return f"job {r.job.id} augments its batches"
        if r.optimizer.name != "sgd":
            return f"job {r.job.id} trains with {r.optimizer.name}, not sgd"
    reason = fusible_reason([r.model for r in runs])
    if reason is not None:
        return reason
    first = runs[0]
    for r in runs[1:]:
        if r.data.train_x.shape != first.data.train_x.shape:
            return "the jobs' training inputs differ in shape"
        if r.data.test_x.shape != first.data.test_x.shape:
            return "the jobs' test inputs differ in shape"
        if (r.ctx.validation is None) != (first.ctx.validation is None) or (
            r.ctx.validation is not None
            and first.ctx.validation is not None
            and r.ctx.validation[0].shape != first.ctx.validation[0].shape
        ):
            return "the jobs' validation splits differ"
        if r.ctx.precision != first.ctx.precision or r.ctx.select != first.ctx.select:
            return "the jobs differ in precision or model selection"
    return None


class _MemberState:
    """Member ``index`` of a fused model seen as a model by :class:`BestEpoch`: its
    state is the member's slices of the stacked parameters (chain models hold no
    buffers), under the member model's own parameter names."""

    def __init__(self, fused: FusedNet, index: int):
        self.fused, self.index = fused, index

    def state_dict(self) -> dict[str, Tensor]:
        fused = self.fused
        return {
            name: member_slice(fused.stacked[key], self.index, fused.members, how)
            for name, (key, how) in fused.origin.items()
        }


def _train_together(
    runs: list[JobRun], channels_last: bool
) -> tuple[list[Any], list[str | None], float]:
    """Train the members fused, logging each one's epochs into its own context as
    ``train_epochs`` would; (trained models, divergence reasons, wall seconds)."""
    first = runs[0]
    options = first.optimizer.options
    epochs, precision = int(options.epochs), first.ctx.precision
    members = [
        member_run(r.optimizer.options, r.data.train_x, r.data.train_y, r.ctx.generator)
        for r in runs
    ]
    start = time.perf_counter()
    fused = fuse([r.model for r in runs]).use_channels_last(channels_last)
    for r in runs:
        r.model = None  # type: ignore[assignment]  # its copy is in the fused model
    bests = [BestEpoch() for _ in runs] if first.ctx.select == "best_val" else None
    validation = first.ctx.validation is not None
    dead: set[int] = set()
    eval_batch = first.ctx.eval_batch_size

    def on_epoch(epoch: int, losses: list[float], lrs: list[float]) -> None:
        dead.update(i for i, loss in enumerate(losses) if not math.isfinite(loss))
        tests = evaluate_members(
            fused,
            [r.data.test_x for r in runs],
            [r.data.test_y for r in runs],
            eval_batch,
            precision,
        )
        vals = (
            evaluate_members(
                fused,
                [r.ctx.validation[0] for r in runs],  # type: ignore[index]
                [r.ctx.validation[1] for r in runs],  # type: ignore[index]
                eval_batch,
                precision,
            )
            if validation
            else None
        )
        for i, r in enumerate(runs):
            if i in dead:
                continue
            extra = {}
            if vals is not None:
                extra = {"val_loss": vals[i].loss, "val_accuracy": vals[i].accuracy}
            r.ctx.log(
                epoch + 1,
                epochs,
                phase="train",
                train_loss=losses[i],
                test_loss=tests[i].loss,
                test_accuracy=tests[i].accuracy,
                lr=lrs[i],
                **extra,
            )
            if bests is not None and vals is not None:
                bests[i].observe(_MemberState(fused, i), epoch + 1, vals[i])  # type: ignore[arg-type]

    _, diverged = train_fused(
        fused,
        members,
        epochs=epochs,
        batch_size=int(options.batch_size),
        precision=precision,
        on_epoch=on_epoch,
    )
    seconds = time.perf_counter() - start
    models: list[Any] = unfuse(fused)
    for i, r in enumerate(runs):
        best = bests[i] if bests is not None else None
        if diverged[i] is None and best is not None and best.evaluation is not None:
            chosen = best.restore(models[i])
            r.ctx.log(
                chosen,
                phase=SELECTION_PHASE,
                val_accuracy=best.evaluation.accuracy,
                val_loss=best.evaluation.loss,
            )
    return models, diverged, seconds
