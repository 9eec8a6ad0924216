"""The study ETA a running study prints, on a fake clock: before the first job finishes
it comes from the running jobs' projected phase ends; after, from finished jobs."""

from __future__ import annotations

import io
import re

import pytest

from benchharness import progress as progress_module
from benchharness.jobcontext import Progress as JobEvent
from benchharness.matrix import Job
from benchharness.progress import StudyProgress
from benchharness.records import RunRecord


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(progress_module.time, "monotonic", fake)
    return fake


def _job(i: int) -> Job:
    return Job(
        id=f"job{i}",
        config_id=f"config{i}",
        config={"model": {"name": "m"}, "optimizer": {"name": "sgd"}},
        axes={},
        seed=i,
        spec_name="s",
        spec_hash="h",
        quick=False,
    )


def _last_eta(stream: io.StringIO) -> str:
    return re.findall(r"study ETA (\S+)", stream.getvalue())[-1]


def _epoch(progress: StudyProgress, job: Job, step: int, total: int) -> None:
    progress.event(JobEvent(job.id, "train", step, total, {"train_loss": 0.5}))


def test_study_eta_is_unknown_until_a_job_reports_an_epoch(clock: Clock) -> None:
    stream = io.StringIO()
    study = StudyProgress(4, 1, live=False, stream=stream)
    study.job_started_event(_job(0))
    clock.now += 5
    study.event(JobEvent("job0", "prepare", 1, 1, {}))
    assert _last_eta(stream) == "?"


def test_one_job_at_a_time_projects_its_length_over_the_study(clock: Clock) -> None:
    stream = io.StringIO()
    study = StudyProgress(4, 1, live=False, stream=stream)
    job = _job(0)
    study.job_started_event(job)
    clock.now += 10  # epoch 1 of 10 took 10 s: the job takes 100 s, 4 jobs 400 s
    _epoch(study, job, 1, 10)
    assert _last_eta(stream) == "0:06:30"  # 400 s - the 10 s gone


def test_members_of_a_group_count_as_jobs_running_together(clock: Clock) -> None:
    stream = io.StringIO()
    study = StudyProgress(10, 1, live=False, stream=stream)
    group = [_job(i) for i in range(5)]
    for job in group:
        study.job_started_event(job)
    clock.now += 20  # the group's epoch 1 of 3: the group takes 60 s for 5 of the 10 jobs
    for job in group:
        _epoch(study, job, 1, 3)
    assert _last_eta(stream) == "0:01:40"  # 2 groups x 60 s - 20 s


def test_after_the_first_job_the_eta_comes_from_finished_jobs(clock: Clock) -> None:
    stream = io.StringIO()
    study = StudyProgress(4, 2, live=False, stream=stream)
    first, second = _job(0), _job(1)
    study.job_started_event(first)
    study.job_started_event(second)
    clock.now += 30
    _epoch(study, second, 1, 100)  # a slow projection, ignored once a job has finished
    record = RunRecord(
        job_id=first.id,
        config_id=first.config_id,
        spec_name="s",
        spec_hash="h",
        quick=False,
        seed=0,
        config=first.config,
        axes={},
        status="completed",
        metrics={"test_accuracy": 0.9},
    )
    study.job_finished(record)
    assert _last_eta(stream) == "0:00:45"  # 30 s per job x 3 left / 2 workers


def test_a_finished_phase_no_longer_projects(clock: Clock) -> None:
    study = StudyProgress(2, 1, live=False, stream=io.StringIO())
    job = _job(0)
    study.job_started_event(job)
    clock.now += 1
    _epoch(study, job, 1, 2)
    assert study._study_eta() is not None
    _epoch(study, job, 2, 2)  # training is over; evaluation and measurements follow
    assert study._study_eta() is None
