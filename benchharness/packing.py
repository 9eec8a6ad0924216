"""How many jobs the local executor runs at once on each device (``[resources]
jobs_per_device``): one worker process per job slot, several per device when one small
job cannot fill it, and never more workers than CPU threads, so that the threads split
across workers (:func:`benchharness.executor.threads_per_worker`) never oversubscribe the
cores: every worker gets at least one, and together they use the budget.

``auto`` decides by memory: on a GPU, as many jobs as fit in 90 % of its free memory at
the estimated footprint of the study's largest job (CUDA context, its data on the device,
weights with gradients and optimizer state); on the CPU, one (the job's threads already
use every core, and packing only trades intra-op for inter-job parallelism). Measured
utilisation is not used. The decision is a pure function of the device list and these
numbers, so it is tested without a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

AUTO_MAX_PER_DEVICE = 8
CUDA_CONTEXT_BYTES = 400 * 2**20  # what a CUDA context and torch's kernels take per process
PARAM_STATE_FACTOR = 4  # weights, gradients and two optimizer moments (Adam), 4 bytes each


def slots(
    devices: list[torch.device],
    jobs_per_device: int | str,
    *,
    cpu_threads: int,
    free_memory: Callable[[torch.device], int | None],
    job_bytes: int,
) -> list[torch.device]:
    """The devices repeated once per job slot (the executor starts a worker for each).

    ``jobs_per_device`` is a positive int or ``"auto"``; ``free_memory(device)`` is a
    device's free bytes (None: unknown, e.g. the CPU); ``job_bytes`` is one job's
    estimated footprint on a GPU. Per-device counts are then lowered, largest first,
    until there are at most ``cpu_threads`` workers (never below one per device).
    """
    counts = [
        _per_device(device, jobs_per_device, free_memory(device), job_bytes) for device in devices
    ]
    while sum(counts) > max(cpu_threads, len(devices)):
        largest = max(range(len(counts)), key=lambda i: counts[i])
        counts[largest] -= 1
    return [device for device, n in zip(devices, counts, strict=True) for _ in range(n)]


def _per_device(
    device: torch.device, jobs_per_device: int | str, free: int | None, job_bytes: int
) -> int:
    if jobs_per_device != "auto":
        return max(1, int(jobs_per_device))
    if device.type != "cuda" or free is None or job_bytes <= 0:
        return 1
    return max(1, min(AUTO_MAX_PER_DEVICE, math.floor(0.9 * free / job_bytes)))


def job_footprint(data_bytes: int, params: int) -> int:
    """Estimated GPU bytes of one job: CUDA context, the data (moved to the device when it
    fits) and the model's parameter state."""
    return CUDA_CONTEXT_BYTES + data_bytes + PARAM_STATE_FACTOR * 4 * params


def cuda_free_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device (None for any other device)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def largest_job_footprint(jobs: list[Any], registry: Any, data_dir: Any) -> int:
    """:func:`job_footprint` of the study's largest job: its data (after transforms) and
    the parameters of its model, built once per distinct model and input shape."""
    from benchharness import datacache

    largest = 0
    seen: set[str] = set()
    for job in jobs:
        _raw, data = datacache.load(job.config, registry, data_dir)
        key = repr((job.config["model"], data.input_shape, data.num_classes))
        if key in seen:
            continue
        seen.add(key)
        tensors = (data.train_x, data.train_y, data.test_x, data.test_y)
        data_bytes = sum(t.numel() * t.element_size() for t in tensors)
        model = registry.from_table("model", job.config["model"]).build(
            data.input_shape, data.num_classes
        )
        params = sum(p.numel() for p in model.parameters())
        largest = max(largest, job_footprint(data_bytes, params))
    return largest
