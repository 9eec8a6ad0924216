"""Runs jobs as Ray tasks on a Ray cluster (``bench run --executor ray``).

Each job is one task asking for the spec's ``[resources]`` (``cpus_per_job`` cores, which
are also its torch threads, and ``gpus_per_job`` GPUs; a fraction packs several jobs on
one GPU). Every dataset the jobs use is loaded once by the driver and put into Ray's
object store once (``ray.put``); tasks get it from there, not shipped per task. Tasks
return their RunRecord to the driver, which alone writes the database: each result is
saved the moment it arrives, through the same save as the local executor (journal, then
one DuckDB transaction), so resume, ``--force``, ``--retry-failed`` and leases behave the
same. A task whose worker dies (a segfault, an OOM kill, a lost node) is stored as failed
with Ray's error; Ray does not retry it (``max_retries=0``), like the local executor.

Ray is an optional dependency (``pip install 'benchharness[ray]'``). Ray workers import
plugins from installed packages only, like the local executor's worker processes.
"""

from __future__ import annotations

import collections
import math
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchharness import datacache, preflight
from benchharness.allocator import retain_freed_memory
from benchharness.errors import BenchError, first_line
from benchharness.executor import Save, _Study
from benchharness.matrix import Job
from benchharness.plugins import Registry, get_registry
from benchharness.progress import StudyProgress
from benchharness.records import RunRecord
from benchharness.runner import failed_record, run_job

INSTALL_HINT = (
    "--executor ray: Ray is not installed; install it with `pip install 'benchharness[ray]'`"
)
TEST_EXIT_VARIABLE = "BENCH_RAY_TEST_EXIT_JOB"


def import_ray() -> Any:
    """The ``ray`` module, or a one-line BenchError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BenchError(INSTALL_HINT) from None
    return ray


def execute_ray(
    jobs: list[Job],
    *,
    save: Save,
    data_dir: Path,
    cache_dir: Path,
    registry: Registry | None = None,
    progress: StudyProgress | None = None,
    timeout: float | None = None,
    max_failures: int | None = None,
    address: str | None = None,
    cpus_per_job: float = 1.0,
    gpus_per_job: float = 0.0,
) -> list[RunRecord]:
    """Run ``jobs`` as Ray tasks, calling ``save(record)`` for each as it arrives; return
    the records in the order they arrived (fewer than jobs after ``max_failures``).

    Connects to the cluster at ``address`` (``auto``, ``ray://host:10001``, ...), or to the
    Ray instance this process already started, or starts a local one (and stops it at the
    end). At most as many tasks are submitted as the cluster can run at once, so
    ``timeout`` (seconds, counted from submission) rarely counts time spent queued, and
    ``max_failures`` stops new submissions while the running tasks finish.
    """
    ray = import_ray()
    registry = registry or get_registry()
    datacache.prepare([job.config for job in jobs], registry, data_dir)
    preflight.check_jobs(jobs, registry, data_dir, cache_dir)
    progress = progress or StudyProgress(len(jobs), 1)
    study = _Study(save, progress, max_failures)
    started_here = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            where = f"--address {address}" if address else "--executor ray"
            raise BenchError(f"{where}: cannot start or reach Ray ({first_line(error)})") from None
        started_here = address is None
    running: dict[Any, tuple[Job, float, datetime]] = {}
    try:
        datasets = _put_datasets(ray, jobs, registry, data_dir)
        task = ray.remote(_run_on_worker).options(
            num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0, **_runtime_env()
        )
        window = concurrency(ray.cluster_resources(), cpus_per_job, gpus_per_job)
        pending = collections.deque(jobs)
        threads = max(1, math.floor(cpus_per_job))
        while True:
            while pending and len(running) < window and not study.stopping():
                job = pending.popleft()
                ref = task.remote(
                    job,
                    datasets[datacache.dataset_key(job.config)],
                    data_dir,
                    cache_dir,
                    threads,
                    gpus_per_job > 0,
                )
                running[ref] = (job, time.monotonic(), datetime.now(UTC))
                progress.job_started_event(job)
            if not running:
                return study.records
            ready, _ = ray.wait(
                list(running), num_returns=1, timeout=_until_first_deadline(running, timeout)
            )
            for ref in ready:
                job, _submitted, started_at = running.pop(ref)
                study.finish(_result(ray, ref, job, started_at))
            if timeout is not None:
                for ref, (job, submitted, started_at) in list(running.items()):
                    if time.monotonic() - submitted >= timeout:
                        ray.cancel(ref, force=True)
                        del running[ref]
                        study.finish(_failed(job, started_at, f"timed out after {timeout:g} s"))
    finally:
        for ref in running:  # interrupted: the jobs in flight are not saved; a rerun resumes
            ray.cancel(ref, force=True)
        progress.close()
        if started_here:
            ray.shutdown()


def concurrency(resources: dict[str, float], cpus_per_job: float, gpus_per_job: float) -> int:
    """How many jobs the cluster (``ray.cluster_resources()``) runs at once, at least 1."""
    fits = [resources.get("CPU", 0.0) / cpus_per_job] if cpus_per_job > 0 else []
    if gpus_per_job > 0:
        fits.append(resources.get("GPU", 0.0) / gpus_per_job)
    if not fits:
        return 1
    return max(1, math.floor(min(fits) + 1e-9))


def _put_datasets(ray: Any, jobs: list[Job], registry: Registry, data_dir: Path) -> dict:
    """Each distinct dataset (after its data section) in the object store, once."""
    refs: dict[str, Any] = {}
    for job in jobs:
        key = datacache.dataset_key(job.config)
        if key not in refs:
            refs[key] = ray.put(datacache.load_dataset(job.config, registry, data_dir))
    return refs


def _runtime_env() -> dict[str, Any]:
    hook = os.environ.get(TEST_EXIT_VARIABLE)
    return {"runtime_env": {"env_vars": {TEST_EXIT_VARIABLE: hook}}} if hook else {}


def _until_first_deadline(running: dict, timeout: float | None) -> float | None:
    if timeout is None or not running:
        return None
    first = min(submitted for _job, submitted, _started in running.values()) + timeout
    return max(0.0, first - time.monotonic())


def _result(ray: Any, ref: Any, job: Job, started_at: datetime) -> RunRecord:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        return _failed(
            job, started_at, f"ray task failed ({type(error).__name__}): {first_line(error)}"
        )


def _failed(job: Job, started_at: datetime, error: str) -> RunRecord:
    record = failed_record(job, started_at=started_at, error=error)
    record.provenance["device"] = "ray"
    record.finished_at = datetime.now(UTC)
    return record


def _run_on_worker(
    job: Job, data: Any, data_dir: Path, cache_dir: Path, threads: int, use_gpu: bool
) -> RunRecord:
    """The Ray task: run one job on the CPU, or on the GPU Ray assigned (Ray sets
    ``CUDA_VISIBLE_DEVICES``, so it is ``cuda:0`` here)."""
    if os.environ.get(TEST_EXIT_VARIABLE) == job.id:  # the tests' way to kill a worker
        os._exit(3)
    torch.set_num_threads(threads)
    retain_freed_memory()  # see benchharness.allocator: steps stop page-faulting
    datacache.remember_dataset(job.config, data)
    cuda = use_gpu and torch.cuda.is_available()
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    return run_job(
        job,
        registry=get_registry(),
        device=device,
        data_dir=data_dir,
        cache_dir=cache_dir,
        events=lambda _event: None,
    )
