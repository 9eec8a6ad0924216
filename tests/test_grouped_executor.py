"""Seeds trained together in the executor: a grouped run stores what running every job
alone stores (same ids, one row per job, metrics and curves within float tolerance)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchharness import grouped_runner
from benchharness.cli import app
from benchharness.grouped import probe
from benchharness.grouped.probe import Decision
from benchharness.matrix import load_jobs
from benchharness.plugins import get_registry
from benchharness.store import Store

SPEC = """
name = "{name}"

[dataset]
name = "digits"

[model]
name = "{model}"
{model_options}

[optimizer]
name = "sgd"
lr = 0.1
epochs = {epochs}
batch_size = 64
{optimizer_options}

[measure]
latency = false
activation_stats = false

{extra}

[matrix]
{matrix}
"""


def write(tmp_path: Path, name: str, **fields: str) -> Path:
    values = {
        "name": name,
        "model": "lenet300",
        "model_options": "hidden = [16]",
        "epochs": "2",
        "optimizer_options": "",
        "extra": "",
        "matrix": 'seeds = [0, 1, 2]\n"optimizer.lr" = [0.05, 0.2]',
    }
    values.update(fields)
    path = tmp_path / f"{name}.toml"
    path.write_text(SPEC.format(**values))
    return path


def bench(*args) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("bench crashed") from result.exception
    return result


def run(spec: Path, db: Path, *options: str) -> object:
    return bench("run", spec, "--db", db, "--devices", "cpu", *options)


def run_grouped_and_alone(spec: Path, tmp_path: Path, exit_code: int = 0) -> tuple[Path, Path]:
    """``spec`` run grouped and with ``--no-group``, into two databases (grouped, alone);
    both runs must exit with ``exit_code``."""
    grouped, alone = tmp_path / "grouped.duckdb", tmp_path / "alone.duckdb"
    assert run(spec, grouped).exit_code == exit_code
    assert run(spec, alone, "--no-group").exit_code == exit_code
    return grouped, alone


@pytest.fixture
def fuse_always(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The probe says fuse, whatever it would measure; the sizes of the groups it saw."""
    seen: list[int] = []

    def decide(models, *args, **kwargs):
        seen.append(len(models))
        return Decision(True, "forced by the test")

    monkeypatch.setattr(probe, "decide", decide)
    return seen


def rows(db: Path, spec_name: str) -> dict[str, dict]:
    runs = Store(db).runs(spec_name)
    out = {}
    for record in runs.to_dict("records"):
        record["extra"] = json.loads(record["extra"] or "{}")
        out[record["job_id"]] = record
    return out


def curves(db: Path, job_id: str) -> dict[tuple, float]:
    frame = Store(db).curves(job_id)
    return {(r["phase"], r["step"], r["name"]): r["value"] for r in frame.to_dict("records")}


def assert_same_results(grouped: Path, alone: Path, spec_name: str, *, exact: bool = False):
    a, b = rows(grouped, spec_name), rows(alone, spec_name)
    assert sorted(a) == sorted(b)  # the same job ids, one row each
    for job_id, row in a.items():
        other = b[job_id]
        assert row["status"] == other["status"], job_id
        assert row["seed"] == other["seed"]
        if row["status"] != "completed":
            continue
        assert row["test_accuracy"] == other["test_accuracy"], job_id
        assert row["test_loss"] == pytest.approx(other["test_loss"], rel=0 if exact else 1e-5)
        for column in ("selected_epoch", "params", "flops", "precision"):
            assert row[column] == other[column], column
        ca, cb = curves(grouped, job_id), curves(alone, job_id)
        assert sorted(ca) == sorted(cb)
        for key, value in ca.items():
            if key[2].endswith("accuracy") or key[2] == "lr" or exact:
                assert value == cb[key], key
            else:
                assert value == pytest.approx(cb[key], rel=1e-5), key


# --------------------------------------------------------------- fused vs alone


def test_grouped_run_stores_what_each_job_alone_stores(tmp_path, fuse_always):
    spec = write(tmp_path, "grouped")
    grouped, alone = tmp_path / "grouped.duckdb", tmp_path / "alone.duckdb"
    result = run(spec, grouped)
    assert result.exit_code == 0, result.output
    # 3 seeds x 2 learning rates, same shapes: a group of MAX_MEMBERS (5), the sixth alone
    assert fuse_always == [5]
    assert "grouped 1/1 members 5" in result.stderr
    assert run(spec, alone, "--no-group").exit_code == 0
    assert fuse_always == [5]  # --no-group never asks the probe
    assert_same_results(grouped, alone, "grouped")
    members = [r["extra"].get("train_group_members") for r in rows(grouped, "grouped").values()]
    assert sorted(members, key=str) == [5] * 5 + [None]
    assert all(row["train_seconds"] > 0 for row in rows(grouped, "grouped").values())
    assert all("train_group_members" not in r["extra"] for r in rows(alone, "grouped").values())


def test_best_validation_epoch_is_selected_per_member(tmp_path, fuse_always):
    spec = write(
        tmp_path,
        "select",
        epochs="4",
        extra='[data]\nvalidation = 0.3\nselect = "best_val"',
        matrix="seeds = [0, 1, 2]",
    )
    grouped, alone = run_grouped_and_alone(spec, tmp_path)
    assert fuse_always == [3]
    assert_same_results(grouped, alone, "select")
    selected = {row["selected_epoch"] for row in rows(grouped, "select").values()}
    assert selected <= {1, 2, 3, 4} and None not in selected


def test_a_diverging_member_fails_alone_and_the_others_complete(tmp_path, fuse_always):
    spec = write(
        tmp_path,
        "diverge",
        model="compressednet",
        model_options="width = 0.25",
        epochs="1",
        matrix='"optimizer.lr" = [0.05, 1000.0, 0.1]',
    )
    grouped, alone = run_grouped_and_alone(spec, tmp_path, exit_code=1)
    assert fuse_always == [3]
    assert_same_results(grouped, alone, "diverge")
    by_lr = {r["optimizer.lr"]: r for r in rows(grouped, "diverge").values()}
    assert [by_lr[lr]["status"] for lr in (0.05, 1000.0, 0.1)] == [
        "completed",
        "failed",
        "completed",
    ]
    error = by_lr[1000.0]["error"]
    assert error.startswith("diverged: train: training loss is not finite")
    assert error.endswith("in epoch 1 at lr 1000; try a smaller learning rate")


# ----------------------------------------------------------- when not fused


@pytest.fixture
def no_fused_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("trained fused although it should not")

    monkeypatch.setattr(grouped_runner, "train_fused", refuse)


def test_the_probe_saying_no_runs_each_job_alone(tmp_path, monkeypatch, no_fused_training):
    asked: list[int] = []

    def decide(models, *args, **kwargs):
        asked.append(len(models))
        return Decision(False, "fused not 1.1x faster: 0.90x the sequential speed", 0.9)

    monkeypatch.setattr(probe, "decide", decide)
    spec = write(tmp_path, "probe_no")
    grouped, alone = tmp_path / "grouped.duckdb", tmp_path / "alone.duckdb"
    assert run(spec, grouped).exit_code == 0
    assert asked == [5]  # the sixth job is a group of one (MAX_MEMBERS is 5): no probe
    assert run(spec, alone, "--no-group").exit_code == 0
    assert_same_results(grouped, alone, "probe_no", exact=True)
    assert all("train_group_members" not in r["extra"] for r in rows(grouped, "probe_no").values())


def test_group_seeds_false_in_the_spec_turns_grouping_off(tmp_path, monkeypatch, no_fused_training):
    def decide(*args, **kwargs):
        raise AssertionError("probed although grouping is off")

    monkeypatch.setattr(probe, "decide", decide)
    spec = write(tmp_path, "off", extra="[run]\ngroup_seeds = false")
    result = run(spec, tmp_path / "bench.duckdb")
    assert result.exit_code == 0, result.output
    assert len(rows(tmp_path / "bench.duckdb", "off")) == 6


def test_a_failing_fused_training_falls_back_to_each_job_alone(tmp_path, fuse_always, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(grouped_runner, "train_fused", broken)
    spec = write(tmp_path, "fallback", matrix="seeds = [0, 1]")
    grouped, alone = run_grouped_and_alone(spec, tmp_path)
    assert_same_results(grouped, alone, "fallback", exact=True)
    for row in rows(grouped, "fallback").values():
        assert row["extra"]["train_group_error"] == "RuntimeError: out of memory"


# ------------------------------------------------ units, failures, workers


def test_units_are_groups_or_single_jobs(tmp_path):
    spec = write(
        tmp_path,
        "units",
        matrix='seeds = [0, 1]\n"model.hidden" = [[4], [8]]\n"optimizer.name" = ["sgd", "adam"]',
    )
    _, jobs = load_jobs(spec, get_registry())
    assert [len(u) for u in grouped_runner.units(jobs, group=False)] == [1] * 8
    grouped = grouped_runner.units(jobs, group=True)
    # sgd: one group of both seeds per width; adam (not fused): one unit per job
    assert sorted(len(u) for u in grouped) == [1, 1, 1, 1, 2, 2]
    for unit in grouped:
        assert (
            len({(j.config["model"]["hidden"][0], j.config["optimizer"]["name"]) for j in unit})
            == 1
        )
    assert sorted(j.id for u in grouped for j in u) == sorted(j.id for j in jobs)


def test_max_failures_starts_no_unit_after_the_failures(tmp_path, fuse_always):
    spec = write(
        tmp_path,
        "doomed",
        model="compressednet",
        model_options="width = 0.25",
        epochs="1",
        matrix='"model.width" = [0.25, 0.5]\n"optimizer.lr" = [1000.0, 2000.0]',
    )
    db = tmp_path / "bench.duckdb"
    result = run(spec, db, "--max-failures", "2")
    assert result.exit_code == 1
    assert "[job 3/4]" not in result.stderr  # the second group never started
    assert "stopped after 2 failed jobs (--max-failures 2): 2 jobs not started" in result.stderr
    stored = rows(db, "doomed")
    assert len(stored) == 2 and {r["status"] for r in stored.values()} == {"failed"}


HANG_MODEL = '''
"""A model whose build never returns for some seeds: a hung member of a group."""
import time

import torch
from pydantic import Field
from torch import nn

from benchharness import Model, PluginOptions, hookimpl


class SleepyNet(Model):
    """A linear classifier; its build hangs when the job's seed is in hang_seeds."""

    name = "sleepy_net"
    version = "1.0"

    class Options(PluginOptions):
        hang_seeds: list[int] = Field([], description="seeds whose build hangs")

    def build(self, input_shape, num_classes):
        while torch.initial_seed() in self.options.hang_seeds:
            time.sleep(0.5)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))


@hookimpl
def register_models(register):
    register(SleepyNet)
'''


def test_a_hung_group_times_out_after_its_members_timeouts(tmp_path):
    """A unit of k jobs gets k times the per-job timeout; its jobs then fail as timed out."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "bench_sleepy_model.py").write_text(HANG_MODEL)
    info = site / "bench_sleepy_model-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bench-sleepy-model\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[benchharness]\nsleepy = bench_sleepy_model\n")
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    spec = write(
        tmp_path,
        "hung",
        model="sleepy_net",
        model_options="hang_seeds = [1]",
        extra="[run]\ntimeout_minutes = 0.04  # 2.4 s per job",
        matrix="seeds = [0, 1]",
    )
    db = tmp_path / "bench.duckdb"
    done = subprocess.run(
        [sys.executable, "-m", "benchharness", "run", str(spec), "--db", str(db)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    stored = rows(db, "hung")
    assert len(stored) == 2
    assert {(r["status"], r["error"]) for r in stored.values()} == {
        ("failed", "timed out after 4.8 s")
    }


def test_bf16_members_train_fused_in_bf16(tmp_path, fuse_always):
    """Reduced precision fuses too (its rounding differs more: bf16 keeps 8 bits)."""
    spec = write(
        tmp_path, "bf16", extra='[compute]\nprecision = "bf16"', matrix="seeds = [0, 1, 2]"
    )
    grouped, alone = run_grouped_and_alone(spec, tmp_path)
    assert fuse_always == [3]
    a, b = rows(grouped, "bf16"), rows(alone, "bf16")
    assert sorted(a) == sorted(b)
    for job_id, row in a.items():
        assert row["precision"] == "bf16" and row["extra"]["train_group_members"] == 3
        assert row["test_accuracy"] == pytest.approx(b[job_id]["test_accuracy"], abs=0.02)
        assert row["test_loss"] == pytest.approx(b[job_id]["test_loss"], rel=1e-2)
