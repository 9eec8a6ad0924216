"""Failures stay contained: a hung job is stopped by its timeout and the study goes on;
SIGTERM stops `bench run` like Ctrl-C (exit 143) without losing a finished result;
--max-failures stops a doomed study early; failed jobs are rerun only on request.

The hung job comes from a real plugin package (module + dist-info with a `benchharness`
entry point, on PYTHONPATH), since a timeout runs jobs in spawned workers, which only
see installed plugins."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.executor import _Study
from benchharness.interrupts import Terminated, sigterm_as_interrupt
from benchharness.progress import StudyProgress
from benchharness.store import Store

SPECS = Path(__file__).parent / "specs"

HANG_PLUGIN = '''
"""A model plugin whose build() never returns for one tag: a hung job."""
import time

from pydantic import Field
from torch import nn

from benchharness import Model, PluginOptions, hookimpl


class Sleepy(Model):
    """Logistic regression; hangs in build() when tag == hang_tag."""

    name = "sleepy"
    version = "1.0"

    class Options(PluginOptions):
        tag: int = Field(0, description="which job this is")
        hang_tag: int = Field(-1, description="the tag whose build hangs")

    def build(self, input_shape, num_classes):
        while self.options.tag == self.options.hang_tag:
            time.sleep(1)
        features = 1
        for size in input_shape:
            features *= size
        return nn.Sequential(nn.Flatten(), nn.Linear(features, num_classes))


@hookimpl
def register_models(register):
    register(Sleepy)
'''

HANG_SPEC = """
name = "hang_study"

[dataset]
name = "digits"

[model]
name = "sleepy"
hang_tag = 2

[optimizer]
name = "sgd"
lr = 0.1
epochs = 1
batch_size = 64

[measure]
latency = false
activation_stats = false

[run]
timeout_minutes = 0.05   # 3 s

[matrix]
"model.tag" = [1, 2, 3]
"""


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a `bench` process that has the hanging plugin installed."""
    site = tmp_path_factory.mktemp("site")
    (site / "bench_hang_plugin.py").write_text(HANG_PLUGIN)
    info = site / "bench_hang_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-hang-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[benchharness]\nhang = bench_hang_plugin\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def bench_process(env: dict[str, str], *args: str | Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchharness", *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a batch scheduler's job
    )


def read_until(proc: subprocess.Popen, pattern: str, seconds: float = 90) -> list[str]:
    """stderr lines up to and including the first that matches ``pattern``."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return seen
    proc.kill()
    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(seen))


def rows(db: Path) -> dict[int, tuple[str, str | None]]:
    runs = Store(db).runs()
    return {
        int(r["model.tag"]): (r["status"], r["error"] if isinstance(r["error"], str) else None)
        for _, r in runs.iterrows()
    }


def test_sigterm_then_a_hung_job_times_out_and_the_study_goes_on(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    spec = tmp_path / "hang.toml"
    spec.write_text(HANG_SPEC)
    db = tmp_path / "bench.duckdb"

    # 1. SIGTERM to the whole process group (workers too) while job 2 hangs: the run
    # stops at once like Ctrl-C, job 1 is kept, job 2 is not stored as failed.
    proc = bench_process(plugin_env, "run", spec, "--db", db, "--timeout", "5")
    try:
        read_until(proc, r"^\[job 2/3\] start ")
        os.killpg(proc.pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert err.rstrip().endswith(
        "interrupted by SIGTERM: every finished job is saved; run the same command to resume"
    )
    assert "Traceback" not in err
    assert rows(db) == {1: ("completed", None)}

    # 2. the same command resumes; the hung job is stopped by [run] timeout_minutes = 0.05
    proc = bench_process(plugin_env, "run", spec, "--db", db)
    try:
        _out, err = proc.communicate(timeout=120)  # would hang if a worker outlived it
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "3 jobs, 1 already completed, 2 to run" in err
    assert re.search(r"^\[job 1/2\] done in \S+: FAILED: timed out after 3 s \|", err, re.M)
    assert re.search(r"^\[job 2/2\] done in \S+: test accuracy ", err, re.M)
    assert "1 completed, 1 failed" in err
    assert rows(db) == {
        1: ("completed", None),
        2: ("failed", "timed out after 3 s"),
        3: ("completed", None),
    }


def test_sigterm_inline_keeps_finished_jobs_and_the_same_command_resumes(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    db = tmp_path / "bench.duckdb"
    spec = tmp_path / "three.toml"  # 3 jobs, run in the bench process itself (no timeout)
    spec.write_text(DOOMED.replace("1000.0, 2000.0, 0.05, 0.1", "0.05, 0.1, 0.2"))
    proc = bench_process(plugin_env, "run", spec, "--db", db)
    try:
        read_until(proc, r"^\[job 1/3\] done in ")
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM: every finished job is saved" in err
    done = Store(db).completed_ids(Store(db).runs()["job_id"])
    assert 1 <= len(done) < 3

    result = CliRunner().invoke(app, ["run", str(spec), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert f"3 jobs, {len(done)} already completed, {3 - len(done)} to run" in result.stderr
    assert len(Store(db).completed_ids(Store(db).runs()["job_id"])) == 3


def test_a_signal_during_a_save_waits_for_the_save(tmp_path: Path) -> None:
    saved = []

    def save(record):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        time.sleep(0.05)
        saved.append(record)
        return "saved"

    progress = StudyProgress(1, 1, live=False, stream=open(os.devnull, "w"))
    study = _Study(save, progress, max_failures=None)
    record = type("R", (), {"status": "completed", "job_id": "x", "metrics": {}})()
    with pytest.raises(Terminated), sigterm_as_interrupt():
        study.finish(record)
    assert saved == [record]  # the write completed before the interruption took effect


# ------------------------------------------------- --max-failures and --retry-failed

DOOMED = """
name = "doomed"

[dataset]
name = "digits"

[model]
name = "compressednet"
width = 0.25

[optimizer]
name = "sgd"
epochs = 1
batch_size = 64

[measure]
latency = false
activation_stats = false

[matrix]
"optimizer.lr" = [1000.0, 2000.0, 0.05, 0.1]
"""


def bench(*args: str | Path):
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("bench crashed") from result.exception
    return result


def test_max_failures_stops_early_and_failed_jobs_rerun_only_when_asked(tmp_path: Path) -> None:
    spec = tmp_path / "doomed.toml"
    spec.write_text(DOOMED)
    db = tmp_path / "bench.duckdb"

    first = bench("run", spec, "--db", db, "--max-failures", "2")
    assert first.exit_code == 1, first.output
    err = first.stderr
    assert "4 jobs, 0 already completed, 4 to run" in err
    assert re.search(r"^\[job 2/4\] done in \S+: FAILED: diverged", err, re.M)
    assert "[job 3/4]" not in err  # nothing started after the second failure
    assert "0 completed, 2 failed" in err
    assert (
        "stopped after 2 failed jobs (--max-failures 2): 2 jobs not started; run the same "
        "command to resume them (add --retry-failed to rerun the failed ones too)"
    ) in err
    runs = Store(db).runs().set_index("optimizer.lr")
    assert sorted(runs.index) == [1000.0, 2000.0]
    assert set(runs["status"]) == {"failed"}

    # the same command resumes: the two failed jobs are skipped, the others run
    again = bench("run", spec, "--db", db, "--max-failures", "2")
    assert again.exit_code == 1, again.output  # the study still has failed jobs
    assert (
        "4 jobs, 0 already completed, 2 failed earlier (not rerun without --retry-failed), "
        "2 to run" in again.stderr
    )
    assert "[job 2/2] done in" in again.stderr and "2 completed, 0 failed" in again.stderr
    runs = Store(db).runs().set_index("optimizer.lr")
    assert runs.loc[0.05, "status"] == runs.loc[0.1, "status"] == "completed"

    nothing = bench("run", spec, "--db", db)
    assert nothing.exit_code == 1
    assert (
        "2 already completed, 2 failed earlier (not rerun without --retry-failed), 0 to run"
        in nothing.stderr
    )

    retried = bench("run", spec, "--db", db, "--retry-failed")
    assert retried.exit_code == 1
    assert "4 jobs, 2 already completed, 2 to run" in retried.stderr
    assert "0 completed, 2 failed" in retried.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0"], "--timeout: must be a positive number of minutes, got 0.0"),
        (["--timeout", "nan"], "--timeout: must be a positive number of minutes, got nan"),
        (["--max-failures", "0"], "--max-failures: must be at least 1, got 0"),
        (["--set", "run.timeout_minutes=-1"], "run.timeout_minutes"),
        (["--set", "run.timeout_minute=1"], "run.timeout_minute"),
    ],
)
def test_bad_failure_options_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = bench("run", SPECS / "cli_diverge.toml", "--db", tmp_path / "x.duckdb", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "x.duckdb").exists()
