"""Local packing: how many jobs run at once per device, against fake device lists (no GPU
here), with hand counts; and a packed CPU study whose workers split the threads."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchharness.executor import execute, threads_per_worker
from benchharness.matrix import plan_jobs
from benchharness.packing import (
    AUTO_MAX_PER_DEVICE,
    CUDA_CONTEXT_BYTES,
    job_footprint,
    largest_job_footprint,
    slots,
)
from benchharness.plugins import get_registry
from benchharness.progress import StudyProgress
from benchharness.store import Store

CPU = torch.device("cpu")
GPU0, GPU1 = torch.device("cuda", 0), torch.device("cuda", 1)
GiB = 2**30


def no_memory(_device):
    return None


def test_fixed_count_repeats_each_device() -> None:
    got = slots([GPU0, GPU1], 3, cpu_threads=16, free_memory=no_memory, job_bytes=0)
    assert got == [GPU0, GPU0, GPU0, GPU1, GPU1, GPU1]
    assert slots([CPU], 1, cpu_threads=4, free_memory=no_memory, job_bytes=0) == [CPU]


def test_never_more_workers_than_cpu_threads() -> None:
    # 2 GPUs × 4 jobs = 8 workers on 6 threads: lowered, largest first, to 3 + 3
    got = slots([GPU0, GPU1], 4, cpu_threads=6, free_memory=no_memory, job_bytes=0)
    assert got.count(GPU0) == 3 and got.count(GPU1) == 3
    assert threads_per_worker(len(got), budget=6) == 1
    # CPU packing: 4 jobs on 2 threads → 2 workers of 1 thread each
    got = slots([CPU], 4, cpu_threads=2, free_memory=no_memory, job_bytes=0)
    assert got == [CPU, CPU] and threads_per_worker(len(got), budget=2) == 1
    # one worker per device stays even if there are more devices than threads
    assert slots([GPU0, GPU1], 2, cpu_threads=1, free_memory=no_memory, job_bytes=0) == [
        GPU0,
        GPU1,
    ]


def test_auto_fits_jobs_in_free_gpu_memory() -> None:
    free = {GPU0: 10 * GiB, GPU1: 3 * GiB}
    job = 2 * GiB
    got = slots([GPU0, GPU1], "auto", cpu_threads=64, free_memory=free.get, job_bytes=job)
    # floor(0.9 · 10 / 2) = 4 on GPU0; floor(0.9 · 3 / 2) = 1 on GPU1
    assert got.count(GPU0) == 4 and got.count(GPU1) == 1
    # a job bigger than the free memory still gets its one slot
    assert slots([GPU1], "auto", cpu_threads=8, free_memory=free.get, job_bytes=50 * GiB) == [GPU1]
    # tiny jobs: capped per device, then by the threads
    tiny = slots([GPU0], "auto", cpu_threads=64, free_memory=free.get, job_bytes=1)
    assert len(tiny) == AUTO_MAX_PER_DEVICE
    assert len(slots([GPU0], "auto", cpu_threads=3, free_memory=free.get, job_bytes=1)) == 3
    # auto on the CPU: one worker (its threads already use every core)
    assert slots([CPU], "auto", cpu_threads=8, free_memory=no_memory, job_bytes=1) == [CPU]


def test_footprint_counts_context_data_and_parameter_state(tmp_path: Path, data_dir) -> None:
    assert job_footprint(1000, 10) == CUDA_CONTEXT_BYTES + 1000 + 4 * 4 * 10
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    jobs = list(plan_jobs(spec, get_registry()).jobs())
    # digits: 1797 8×8 images split 80/20, float32 inputs and int64 labels; the widest
    # net is 64-32-10: 64·32 + 32 + 32·10 + 10 = 2410 parameters
    data_bytes = 1797 * 64 * 4 + 1797 * 8
    assert largest_job_footprint(jobs, get_registry(), data_dir) == job_footprint(data_bytes, 2410)


SPEC = """
name = "packing"
[dataset]
name = "digits"
[model]
name = "lenet300"
hidden = [8]
[optimizer]
name = "sgd"
epochs = 1
batch_size = 64
[measure]
latency = false
[matrix]
"model.hidden" = [[4], [32]]
seeds = [0]
"""


@pytest.fixture
def four_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)  # the budget the workers split (threads, not cores: fine here)
    yield
    torch.set_num_threads(before)


def test_packed_cpu_study_splits_threads(tmp_path: Path, data_dir, four_threads) -> None:
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    jobs = list(plan_jobs(spec, get_registry()).jobs())
    store = Store(tmp_path / "bench.duckdb")
    records = execute(
        jobs,
        devices=[CPU],
        save=store.save,
        data_dir=data_dir,
        cache_dir=tmp_path / "cache",
        progress=StudyProgress(2, 2, live=False, stream=open("/dev/null", "w")),  # noqa: SIM115
        jobs_per_device=2,
    )
    assert [r.status for r in records] == ["completed", "completed"]
    assert (store.runs()["torch_threads"] == 2).all()  # 4 threads over 2 workers
