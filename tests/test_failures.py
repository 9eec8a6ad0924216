"""Failures stay contained: a hung job is stopped by its timeout and the study goes on;
SIGTERM stops `bench run` like Ctrl-C (exit 143) without losing a finished result;
--max-failures stops a doomed study early; failed jobs are rerun only on request.

The hung job comes from a real plugin package (module + dist-info with a `benchharness`
entry point, on PYTHONPATH), since a timeout runs jobs in spawned workers, which only
see installed plugins."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
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
"""A training scheme that never returns for one tag: a hung job."""
import time

from pydantic import Field

from benchharness import Optimizer, PluginOptions, hookimpl


class Sleepy(Optimizer):
    """Returns the model untrained; hangs when its tag is one of hang_tags."""

    name = "sleepy"
    version = "1.0"

    class Options(PluginOptions):
        tag: int = Field(0, description="which job this is")
        hang_tags: list[int] = Field([], description="the tags whose training hangs")

    def train(self, model, ctx):
        while self.options.tag in self.options.hang_tags:
            time.sleep(1)
        ctx.log(1, 1, done=1.0)
        return model


@hookimpl
def register_optimizers(register):
    register(Sleepy)
'''

HANG_SPEC = """
name = "hang_study"

[dataset]
name = "digits"

[model]
name = "lenet300"
hidden = [16]

[optimizer]
name = "sleepy"
hang_tags = [2, 4]

[measure]
latency = false
activation_stats = false

[run]
timeout_minutes = 0.1   # 6 s

[matrix]
"optimizer.tag" = [1, 2, 3, 4]
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


class Bench:
    """A real `bench` process in its own process group (as a batch scheduler's job),
    whose stderr lines are collected as they come."""

    def __init__(self, env: dict[str, str], *args: str | Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchharness", *map(str, args)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern: str, seconds: float = 120) -> None:
        """Until a stderr line matches ``pattern``; fails (killing the process) if none
        comes in time or the process ends first."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(self.seen))
            self.seen.append(line)
            if re.search(pattern, line):
                return

    def finish(self, seconds: float = 120) -> tuple[int, str]:
        """(exit code, all of stderr). Its stderr closes only when every process that
        inherited it (workers) has ended: a worker left behind fails this."""
        try:
            self.proc.wait(timeout=seconds)
            self._pump.join(timeout=seconds)
            assert not self._pump.is_alive(), "a process of the run outlived it"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        while (line := self.lines.get()) is not None:
            self.seen.append(line)
        return self.proc.returncode, "\n".join(self.seen)


def rows(db: Path) -> dict[int, tuple[str, str | None]]:
    runs = Store(db).runs()
    return {
        int(r["optimizer.tag"]): (r["status"], r["error"] if isinstance(r["error"], str) else None)
        for _, r in runs.iterrows()
    }


def test_a_hung_job_times_out_the_study_goes_on_and_sigterm_stops_it(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    spec = tmp_path / "hang.toml"
    spec.write_text(HANG_SPEC)
    db = tmp_path / "bench.duckdb"
    # Jobs 2 and 4 hang. Job 2 is stopped by [run] timeout_minutes and a fresh worker
    # runs job 3; during job 4, SIGTERM reaches the whole process group (workers too, as
    # from a batch scheduler): the run stops at once like Ctrl-C, job 4 is not stored.
    run = Bench(plugin_env, "run", spec, "--db", db)
    run.wait_for(r"^\[job 4/4\] start ")
    os.killpg(run.proc.pid, signal.SIGTERM)
    code, err = run.finish()
    assert code == 143, err
    assert re.search(r"^\[job 2/4\] done in \S+: FAILED: timed out after 6 s \|", err, re.M)
    assert re.search(r"^\[job 3/4\] done in \S+: test accuracy ", err, re.M)
    assert "[job 4/4] done" not in err
    assert err.endswith(
        "interrupted by SIGTERM: every finished job is saved; run the same command to resume"
    )
    assert "Traceback" not in err
    assert rows(db) == {
        1: ("completed", None),
        2: ("failed", "timed out after 6 s"),
        3: ("completed", None),
    }


def test_sigterm_inline_keeps_finished_jobs_and_the_same_command_resumes(
    tmp_path: Path, plugin_env: dict[str, str]
) -> None:
    db = tmp_path / "bench.duckdb"
    spec = tmp_path / "three.toml"  # 3 jobs, run in the bench process itself (no timeout)
    spec.write_text(DOOMED.replace("1000.0, 2000.0, 0.05, 0.1", "0.05, 0.1, 0.2"))
    run = Bench(plugin_env, "run", spec, "--db", db)
    run.wait_for(r"^\[job 1/3\] done in ")
    run.proc.send_signal(signal.SIGTERM)
    code, err = run.finish()
    assert code == 143, err
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

    # one job at a time (seeds trained together start as one unit: test_grouped_executor)
    first = bench("run", spec, "--db", db, "--max-failures", "2", "--no-group")
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


def test_the_timeout_option_wins_over_the_spec() -> None:
    from benchharness.cli.run import _timeout_seconds

    assert _timeout_seconds(None, None) is None
    assert _timeout_seconds(None, 2) == 120  # [run] timeout_minutes = 2
    assert _timeout_seconds(0.5, 2) == 30  # --timeout 0.5
