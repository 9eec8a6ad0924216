"""Which jobs of a study may train together as one fused model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from benchharness.matrix import Job

__all__ = ["MAX_MEMBERS", "MEMBER_OPTIONS", "group_jobs", "group_key", "training_key"]

#: The most members one fused model holds. Measured on 2 cores (fp32, channels-last,
#: CompressedNet, ms per member per step): α = 0.5 and 1 gain ≤ 7 % from 5 to 8 members,
#: while α = 2 goes from 26 ms at 5 members to 45 at 6 and 59 at 8 (its activations,
#: 128 × 32·M × 28 × 28 floats, stop fitting the caches), and 20 members at α = 1 are
#: slower than the 20 jobs alone. Larger candidate sets are split into groups of 5.
MAX_MEMBERS = 5

#: ``sgd`` options each member of a fused group may set for itself.
MEMBER_OPTIONS = frozenset(
    {"lr", "lr_min", "weight_decay", "momentum", "nesterov", "schedule", "step_size", "gamma"}
)
_FUSED_OPTIMIZERS = frozenset({"sgd"})
_NOT_TRAINING = ("compressor", "measure")  # used after training only


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def training_key(job: Job) -> str:
    """Equal for two jobs exactly when they train the same model: the configuration
    without the sections used only after training (``compressor``, ``measure``), and
    the seed."""
    config = {k: v for k, v in job.config.items() if k not in _NOT_TRAINING}
    return _digest({"config": config, "seed": job.seed})


def group_key(job: Job) -> str | None:
    """Equal for jobs that may train as members of one fused model; ``None`` for a job
    that must train alone: its optimizer is not one the engine implements (``sgd``), it
    has post-training compressors (its training goes through the trained-model cache,
    shared with its twins) or ``[data] augment`` (drawn batch by batch from its own
    generator, which the fused loop does not do).

    The key ignores the seed, each member's own optimizer settings
    (:data:`MEMBER_OPTIONS`), the post-training sections (``compressor``, ``measure``)
    and every transform parameter except the transforms' names and order — all of which
    leave the trained model's shapes as they are, or (a transform's parameters) may: the
    caller must still check the built models with
    :func:`~benchharness.grouped.chain.fusible_reason` and the members' data shapes.
    Dataset, ``[data]``, ``[compute]``, model, optimizer name, epochs and batch size
    must be equal.
    """
    config = job.config
    optimizer = config["optimizer"]
    if optimizer.get("name") not in _FUSED_OPTIMIZERS:
        return None
    if config.get("compressor") or (config.get("data") or {}).get("augment"):
        return None
    transforms = config.get("transform")
    if isinstance(transforms, dict):
        transforms = [transforms]
    shared = {
        "spec": job.spec_name,
        "dataset": config["dataset"],
        "data": config.get("data"),
        "compute": config.get("compute"),
        "transform": [t.get("name") for t in transforms or []],
        "model": config["model"],
        "optimizer": {k: v for k, v in optimizer.items() if k not in MEMBER_OPTIONS},
    }
    return _digest(shared)


def group_jobs(jobs: Iterable[Job], *, max_members: int = MAX_MEMBERS) -> list[list[Job]]:
    """``jobs`` partitioned into candidate groups to train fused, in first-seen order.

    Jobs with equal :func:`group_key` share a group of at most ``max_members`` (larger
    sets are split in order), except that a group never holds two jobs with the same
    :func:`training_key` — the later one is its own group, and finds the first one's
    model in the trained-model cache. Jobs whose key is ``None`` are groups of one.
    Every job appears in exactly one group.
    """
    if max_members < 1:
        raise ValueError(f"max_members must be >= 1, got {max_members}")
    groups: list[list[Job]] = []
    open_groups: dict[str, list[Job]] = {}
    open_trainings: dict[str, set[str]] = {}
    for job in jobs:
        key = group_key(job)
        trained = training_key(job)
        if key is None:
            groups.append([job])
            continue
        group = open_groups.get(key)
        if group is not None and trained in open_trainings[key]:
            groups.append([job])
            continue
        if group is None or len(group) >= max_members:
            group = []
            groups.append(group)
            open_groups[key] = group
            open_trainings[key] = set()
        group.append(job)
        open_trainings[key].add(trained)
    return groups
