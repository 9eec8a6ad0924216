"""The Ray executor against a local Ray instance this module starts once: the same stored
results as the local executor, a task whose worker dies is stored as failed while the
others complete, timeouts, a driver that dies mid-study and a rerun that resumes, and the
one-line error when Ray is not installed."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.executor import execute
from benchharness.matrix import plan_jobs
from benchharness.plugins import get_registry
from benchharness.progress import StudyProgress
from benchharness.ray_executor import TEST_EXIT_VARIABLE, concurrency, execute_ray
from benchharness.store import Store

ray = pytest.importorskip("ray")
Cluster = pytest.importorskip("ray.cluster_utils").Cluster

SPEC = """
name = "ray_digits"

[dataset]
name = "digits"

[model]
name = "lenet300"
hidden = [8]

[optimizer]
name = "sgd"
lr = 0.1
epochs = 1
batch_size = 64

[measure]
latency = false

[matrix]
"model.hidden" = [[4], [8], [16]]
seeds = [0]

[resources]
cpus_per_job = 1
"""


DYING_SPEC = SPEC.replace('name = "ray_digits"', 'name = "ray_dying"')


def plan(path: Path):
    return list(plan_jobs(path, get_registry()).jobs())


@pytest.fixture(scope="module")
def dying_job(tmp_path_factory) -> str:
    """The id of the job whose Ray worker exits (the second job of the ray_dying spec)."""
    path = tmp_path_factory.mktemp("dying") / "ray_dying.toml"
    path.write_text(DYING_SPEC)
    return plan(path)[1].id


@pytest.fixture(scope="module")
def ray_instance(dying_job):
    # every worker of this instance knows the dying job, so all tests share its workers
    # (a per-task runtime_env would start fresh ones, seconds each)
    # two nodes of one CPU each (ray's test cluster: real raylets on this machine), so
    # jobs are spread over nodes as on a cluster
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "include_dashboard": False},
    )
    cluster.add_node(num_cpus=1)
    ray.init(
        address=cluster.address,
        log_to_driver=False,
        runtime_env={"env_vars": {TEST_EXIT_VARIABLE: dying_job}},
    )
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
    yield
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "ray_digits.toml"
    path.write_text(SPEC)
    return path


def quiet() -> StudyProgress:
    return StudyProgress(3, 1, live=False, stream=open("/dev/null", "w"))  # noqa: SIM115


def run_ray(jobs, store: Store, data_dir: Path, **options):
    return execute_ray(
        jobs,
        save=store.save,
        data_dir=data_dir,
        cache_dir=store.path.parent / "cache",
        progress=quiet(),
        **options,
    )


def test_concurrency_from_cluster_resources() -> None:
    assert concurrency({"CPU": 8.0}, 2, 0) == 4
    assert concurrency({"CPU": 8.0, "GPU": 2.0}, 1, 0.25) == 8  # four jobs per GPU
    assert concurrency({"CPU": 8.0, "GPU": 2.0}, 4, 0.25) == 2  # cores run out first
    assert concurrency({"CPU": 1.0}, 2, 0) == 1  # never zero: it would wait forever
    assert concurrency({"CPU": 3.0}, 0.5, 0) == 6


def test_same_results_as_the_local_executor(ray_instance, spec, tmp_path, data_dir) -> None:
    jobs = plan(spec)
    local, remote = Store(tmp_path / "local.duckdb"), Store(tmp_path / "ray.duckdb")
    execute(
        jobs,
        devices=[torch.device("cpu")],
        save=local.save,
        data_dir=data_dir,
        cache_dir=tmp_path / "cache-local",
        progress=quiet(),
    )
    records = run_ray(jobs, remote, data_dir)
    assert sorted(r.job_id for r in records) == sorted(job.id for job in jobs)
    a = local.runs().set_index("job_id")
    b = remote.runs().set_index("job_id")
    assert sorted(a.index) == sorted(b.index) == sorted(job.id for job in jobs)
    assert (b["status"] == "completed").all()
    for job_id in a.index:
        assert math.isclose(a.loc[job_id, "test_loss"], b.loc[job_id, "test_loss"], rel_tol=1e-4)
        assert abs(a.loc[job_id, "test_accuracy"] - b.loc[job_id, "test_accuracy"]) <= 0.003
        assert a.loc[job_id, "params"] == b.loc[job_id, "params"]
    assert (b["torch_threads"] == 1).all()  # cpus_per_job threads, not the driver's
    assert len(remote.curves(jobs[0].id)) == len(local.curves(jobs[0].id)) > 0


def test_dying_worker_fails_only_its_job(ray_instance, dying_job, tmp_path, data_dir) -> None:
    path = tmp_path / "ray_dying.toml"
    path.write_text(DYING_SPEC)
    jobs = plan(path)
    assert jobs[1].id == dying_job
    store = Store(tmp_path / "bench.duckdb")
    records = run_ray(jobs, store, data_dir)
    status = {r.job_id: r.status for r in records}
    assert status == {jobs[0].id: "completed", jobs[1].id: "failed", jobs[2].id: "completed"}
    runs = store.runs().set_index("job_id")
    assert runs.loc[jobs[1].id, "error"].startswith("ray task failed")
    assert runs.loc[jobs[1].id, "device"] == "ray"


def test_driver_restart_resumes(ray_instance, spec, tmp_path, data_dir, monkeypatch) -> None:
    jobs = plan(spec)
    store = Store(tmp_path / "bench.duckdb")

    def save_then_die(record):
        store.save(record)
        raise KeyboardInterrupt  # the driver is stopped right after its first result

    with pytest.raises(KeyboardInterrupt):
        execute_ray(
            jobs,
            save=save_then_die,
            data_dir=data_dir,
            cache_dir=tmp_path / "cache",
            progress=quiet(),
        )
    first = store.runs()
    assert len(first) == 1 and first["status"].tolist() == ["completed"]
    monkeypatch.setenv("BENCH_DATA_DIR", str(data_dir))
    result = CliRunner().invoke(
        app, ["run", str(spec), "--executor", "ray", "--db", str(store.path)]
    )
    assert result.exit_code == 0, result.output
    assert "1 already completed" in result.output and "2 to run on Ray" in result.output
    runs = store.runs().set_index("job_id")
    assert sorted(runs.index) == sorted(job.id for job in jobs)
    kept = first.set_index("job_id").iloc[0]
    assert runs.loc[kept.name, "finished_at"] == kept["finished_at"]  # not run again


def test_without_ray_one_line_says_how_to_install(spec, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    result = CliRunner().invoke(
        app, ["run", str(spec), "--executor", "ray", "--db", str(tmp_path / "b.duckdb")]
    )
    assert result.exit_code == 2
    assert result.output.strip() == (
        "--executor ray: Ray is not installed; install it with `pip install 'benchharness[ray]'`"
    )
    assert not (tmp_path / "b.duckdb").exists()


def test_address_needs_the_ray_executor(spec, tmp_path) -> None:
    result = CliRunner().invoke(
        app, ["run", str(spec), "--address", "auto", "--db", str(tmp_path / "b.duckdb")]
    )
    assert result.exit_code == 2 and "--address: only with --executor ray" in result.output


# last: its cancelled tasks take their workers with them
def test_timeout_and_max_failures(ray_instance, spec, tmp_path, data_dir) -> None:
    jobs = plan(spec)
    store = Store(tmp_path / "bench.duckdb")
    records = run_ray(jobs, store, data_dir, timeout=0.001, max_failures=1)
    # both slots were filled before the first failure; the third job was never submitted
    assert 1 <= len(records) <= 2
    assert all(r.status == "failed" and r.error == "timed out after 0.001 s" for r in records)
    assert len(store.runs()) == len(records)
