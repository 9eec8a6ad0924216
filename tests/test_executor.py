"""The executor: inline and spawned workers agree, progress lines, a dying worker fails only
its job, and a killed `bench run` leaves a database that opens and resumes."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from benchharness import datacache
from benchharness.cli import app
from benchharness.errors import BenchError
from benchharness.executor import execute, parse_devices
from benchharness.matrix import Job, load_jobs
from benchharness.plugins import get_registry
from benchharness.progress import StudyProgress
from benchharness.records import RunRecord
from benchharness.store import Store

CPU = torch.device("cpu")
BENCH = Path(sys.executable).with_name("bench")

SPEC = """
name = "{name}"

[dataset]
name = "digits"

[model]
name = "lenet300"
hidden = [16]
activation = "relu"

[optimizer]
name = "sgd"
lr = 0.1
epochs = {epochs}
batch_size = 64

[measure]
latency_repeats = 2
latency_warmup = 1

[matrix]
"model.hidden" = {hidden}
seeds = {seeds}
"""


def write_spec(
    tmp_path: Path,
    *,
    name: str = "executor_test",
    epochs: int = 2,
    hidden: str = "[[8], [16]]",
    seeds: str = "[0, 1]",
) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(name=name, epochs=epochs, hidden=hidden, seeds=seeds))
    return path


def four_jobs(tmp_path: Path) -> list[Job]:
    _spec, jobs = load_jobs(write_spec(tmp_path), get_registry())
    assert len(jobs) == 4
    return jobs


def run(
    jobs: list[Job], devices: list[torch.device], tmp_path: Path, db: str, group_seeds: bool = True
) -> tuple[list[RunRecord], Store, str]:
    store = Store(tmp_path / db)
    stream = io.StringIO()
    records = execute(
        jobs,
        devices=devices,
        save=store.save,
        data_dir=tmp_path / "data",
        cache_dir=tmp_path / "cache",
        progress=StudyProgress(len(jobs), len(devices), stream=stream),
        group_seeds=group_seeds,
    )
    return records, store, stream.getvalue()


# ------------------------------------------------------------------ devices


def test_parse_devices() -> None:
    assert parse_devices("cpu") == [CPU]
    assert parse_devices("cpu, cpu") == [CPU, CPU]
    assert parse_devices("auto") == (
        [torch.device("cuda", i) for i in range(torch.cuda.device_count())] or [CPU]
    )
    for bad in ("", "tpu", "cpu,gpu"):
        with pytest.raises(BenchError, match="--devices"):
            parse_devices(bad)
    if not torch.cuda.is_available():
        with pytest.raises(BenchError, match="CUDA is not available"):
            parse_devices("cuda:0")


# ------------------------------------------------- inline vs spawned workers


def test_inline_and_worker_processes_agree(tmp_path: Path) -> None:
    jobs = four_jobs(tmp_path)
    # inline with one thread (tests/conftest.py), as each of two CPU workers on 2 cores
    inline, inline_store, inline_log = run(jobs, [CPU], tmp_path, "inline.duckdb")
    workers, worker_store, worker_log = run(jobs, [CPU, CPU], tmp_path, "workers.duckdb")

    for records in (inline, workers):
        assert sorted(r.job_id for r in records) == sorted(j.id for j in jobs)
        assert all(r.status == "completed" for r in records), [r.error for r in records]
    a = {r.job_id: r.metrics for r in inline}
    b = {r.job_id: r.metrics for r in workers}
    for job in jobs:
        assert a[job.id]["test_accuracy"] == b[job.id]["test_accuracy"], job.axes
        assert a[job.id]["test_loss"] == pytest.approx(b[job.id]["test_loss"], rel=1e-5)
        assert a[job.id]["params"] == b[job.id]["params"]
    # seeds matter: the two seeds of a configuration do not train the same network
    by_config: dict[str, set[float]] = {}
    for job in jobs:
        by_config.setdefault(job.config_id, set()).add(a[job.id]["test_loss"])
    assert all(len(losses) == 2 for losses in by_config.values())

    # every record saved, with the stored values the records carry
    for store, records in ((inline_store, inline), (worker_store, workers)):
        runs = store.runs().set_index("job_id")
        assert len(runs) == 4 and set(runs["status"]) == {"completed"}
        for r in records:
            assert runs.loc[r.job_id, "test_accuracy"] == r.metrics["test_accuracy"]
            assert len(store.curves(r.job_id)) == 2 * 4

    # the worker run's progress: every job started, trained and finished, in order per job
    for i in range(1, 5):
        assert re.search(rf"^\[job {i}/4\] start ", worker_log, re.M)
        assert re.search(
            rf"^\[job {i}/4\] train 2/2 .* \| job ETA \S+ \| study ETA \S+$", worker_log, re.M
        )
        assert re.search(rf"^\[job {i}/4\] done in ", worker_log, re.M)
    assert len(re.findall(r"test_accuracy", worker_log)) == 4 * 2


def test_progress_lines_when_not_a_terminal(tmp_path: Path) -> None:
    jobs = four_jobs(tmp_path)[:2]
    # one job after the other (seeds trained together start together: test_grouped_executor)
    _records, _store, log = run(jobs, [CPU], tmp_path, "progress.duckdb", group_seeds=False)
    lines = log.splitlines()
    assert "\x1b[" not in log  # plain text, no live display
    assert lines[0].startswith("[job 1/2] start ") and jobs[0].id in lines[0]
    epoch = [line for line in lines if line.startswith("[job 1/2] train 1/2 ")]
    assert len(epoch) == 1
    assert re.search(
        r"train_loss \S+ test_loss \S+ test_accuracy [0-9.]+% lr 0\.1 "
        r"\| job ETA \d+:\d\d:\d\d \| study ETA (\?|\d+:\d\d:\d\d)$",
        epoch[0],
    )
    finished = [line for line in lines if line.startswith("[job 2/2] done in ")]
    assert len(finished) == 1
    assert re.search(r"test accuracy [0-9.]+% \| 2/2 finished, study ETA 0:00:00$", finished[0])
    second = next(i for i, line in enumerate(lines) if line.startswith("[job 2/2] start"))
    assert lines.index(epoch[0]) < second


# ----------------------------------------------------------- a worker dies


class DiesInWorker(dict):
    """A config table that, read in any process but its creator's, kills that process
    (after a pause that lets the worker's "start" message reach the parent): a stand-in
    for a segfault or an OOM kill in the middle of a job."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = os.getpid()

    def __getitem__(self, key):
        if os.getpid() != self.owner:
            time.sleep(0.5)
            os._exit(13)
        return super().__getitem__(key)


def test_a_dying_worker_fails_only_its_job(tmp_path: Path) -> None:
    jobs = four_jobs(tmp_path)
    doomed = replace(
        jobs[1], config={**jobs[1].config, "dataset": DiesInWorker(jobs[1].config["dataset"])}
    )
    jobs[1] = doomed
    records, store, log = run(jobs, [CPU, CPU], tmp_path, "dies.duckdb")

    by_id = {r.job_id: r for r in records}
    assert sorted(by_id) == sorted(j.id for j in jobs)
    assert by_id[doomed.id].status == "failed"
    assert by_id[doomed.id].error == "worker process died with exit code 13"
    assert all(by_id[j.id].status == "completed" for j in jobs if j is not doomed)
    runs = store.runs().set_index("job_id")
    assert len(runs) == 4
    assert runs.loc[doomed.id, "status"] == "failed"
    assert "FAILED: worker process died" in log


# --------------------------------------------------- a killed `bench run`


def completed_rows(db: Path):
    try:
        runs = Store(db, lock_timeout=1.0).runs()
    except BenchError:  # not created yet, or locked for longer than a write takes
        return None
    return runs[runs["status"] == "completed"]


def test_killed_run_keeps_finished_jobs_and_resumes(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("BENCH_DB", raising=False)
    n = 8
    spec = write_spec(
        tmp_path, name="killed", epochs=10, hidden="[[128, 128]]", seeds=str(list(range(n)))
    )
    db = tmp_path / "bench.duckdb"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(BENCH), "run", str(spec), "--db", str(db)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        done = None
        while time.monotonic() < deadline and proc.poll() is None:
            done = completed_rows(db)
            if done is not None and len(done) >= 1:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert done is not None and 1 <= len(done) < n

    after = completed_rows(db)  # the database opens
    assert after is not None
    assert set(done["job_id"]) <= set(after["job_id"])
    kept = after.set_index("job_id").loc[list(done["job_id"])]
    assert list(kept["test_accuracy"]) == list(done["test_accuracy"])
    assert list(kept["started_at"]) == list(done["started_at"])
    assert len(after) < n

    result = CliRunner().invoke(app, ["run", str(spec), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"{n} jobs, {len(after)} already completed, {n - len(after)} to run" in result.stderr
    final = completed_rows(db)
    assert len(final) == n and final["job_id"].is_unique
    final = final.set_index("job_id")
    for job_id, row in after.set_index("job_id").iterrows():
        assert final.loc[job_id, "started_at"] == row["started_at"]  # not rerun


@pytest.fixture(autouse=True)
def _fresh_datacache():
    datacache.clear()
    yield
    datacache.clear()
