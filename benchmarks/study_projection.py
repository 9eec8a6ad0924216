"""Projected wall time of a whole study on this machine, from measured step times.

A job's training is ``epochs`` × (``train_steps`` training steps + ``eval_batches``
evaluation batches: the per-epoch test pass, plus the validation split if any). Jobs
whose model, batch size and input shape are equal cost the same per step, so a few
steps are timed per distinct *shape* (and per number of members trained fused), and
the study's time is the sum over its jobs — one after another, or in the groups that
``benchharness.grouped.grouping.group_jobs`` forms. What is left out: per-job fixed
costs (model build, FLOPs count, latency measurement, storing: seconds per job) and
the transforms (cached, well under a second each).

The arithmetic (:func:`project_seconds`) is pure and unit-tested against a hand count;
:func:`measure_costs` and :func:`study_work` do the measuring and the counting.
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "Costs",
    "JobWork",
    "group_seconds",
    "measure_costs",
    "project_seconds",
    "study_work",
]


@dataclasses.dataclass(frozen=True)
class JobWork:
    """One job's training work: ``epochs`` epochs of ``train_steps`` steps and
    ``eval_batches`` evaluation batches each, on a model of shape ``shape`` (a key:
    equal keys cost equal time per step)."""

    shape: str
    epochs: int
    train_steps: int
    eval_batches: int


@dataclasses.dataclass(frozen=True)
class Costs:
    """Measured seconds, keyed by (shape, members): one training step of ``members``
    models trained fused (1: a model alone), and one evaluation batch of them."""

    step: dict[tuple[str, int], float]
    eval: dict[tuple[str, int], float]


def group_seconds(group: Sequence[JobWork], costs: Costs) -> float:
    """Seconds to train ``group``: its members one after another when it has one member
    or when that is faster (the executor's probe fuses a group only where fusing wins),
    else fused, every member taking the same number of steps."""
    first = group[0]
    if any(
        (w.shape, w.epochs, w.train_steps, w.eval_batches)
        != (first.shape, first.epochs, first.train_steps, first.eval_batches)
        for w in group
    ):
        raise ValueError("a fused group's jobs must share shape, epochs and step counts")
    m = len(group)
    key = (first.shape, m)
    together = first.epochs * (
        first.train_steps * costs.step[key] + first.eval_batches * costs.eval[key]
    )
    if m == 1:
        return together
    return min(together, sum(group_seconds([w], costs) for w in group))


def project_seconds(groups: Iterable[Sequence[JobWork]], costs: Costs) -> float:
    """Seconds to train every group, one group after another."""
    return sum(group_seconds(g, costs) for g in groups)


def _shape_key(model: dict[str, Any], batch_size: int, eval_bs: int, input_shape) -> str:
    return json.dumps(
        {
            "model": model,
            "batch_size": batch_size,
            "eval_batch_size": eval_bs,
            "input": list(input_shape),
        },
        sort_keys=True,
        default=str,
    )


def study_work(spec_path: str | Path, data_dir: Path, registry) -> tuple[list, dict, dict]:
    """The full (not ``--quick``) study's jobs, each job's :class:`JobWork` by job id, and
    per shape key what building its model needs: ``(model table, input shape, classes)``."""
    from benchharness import datacache, matrix

    _, jobs = matrix.load_jobs(spec_path, registry)
    work: dict[str, JobWork] = {}
    shapes: dict[str, tuple[dict[str, Any], tuple[int, ...], int]] = {}
    transformed_shape: dict[str, tuple[int, ...]] = {}
    for job in jobs:
        config = job.config
        data = datacache.load_dataset(config, registry, data_dir)
        fraction = float((config.get("data") or {}).get("validation", 0.0))
        n_val = round(fraction * data.train_x.shape[0])
        n_train, n_eval = data.train_x.shape[0] - n_val, data.test_x.shape[0] + n_val
        transforms = datacache.as_list(config.get("transform"))
        tkey = json.dumps([config["dataset"], config.get("data"), transforms], sort_keys=True)
        if tkey not in transformed_shape:  # the output shape, from a few images
            sample = data.replace(train_x=data.train_x[:16], train_y=data.train_y[:16])
            for table in transforms:
                sample = registry.from_table("transform", table).apply(sample)
            transformed_shape[tkey] = tuple(sample.train_x.shape[1:])
        optimizer = config["optimizer"]
        batch_size, epochs = int(optimizer["batch_size"]), int(optimizer["epochs"])
        eval_bs = int((config.get("measure") or {}).get("eval_batch_size", 1000))
        key = _shape_key(config["model"], batch_size, eval_bs, transformed_shape[tkey])
        shapes[key] = (config["model"], transformed_shape[tkey], data.num_classes)
        work[job.id] = JobWork(
            key, epochs, math.ceil(n_train / batch_size), math.ceil(n_eval / eval_bs)
        )
    return jobs, work, shapes


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_costs(
    shapes: dict[str, tuple[dict[str, Any], tuple[int, ...], int]],
    members: dict[str, set[int]],
    registry,
    *,
    precision: str,
    steps: int,
    repeats: int,
) -> Costs:
    """Times ``steps`` training steps (median of ``repeats`` after a warm-up) and one
    evaluation batch per shape, for one model alone and for every fused member count in
    ``members[shape]`` (fused: the channels-last layout), under ``precision``, on random
    inputs of the shape (time does not depend on the values)."""
    costs = Costs({}, {})
    for key, (model_table, input_shape, classes) in shapes.items():

        def factory(t=model_table, s=input_shape, c=classes):
            return registry.from_table("model", t).build(s, c)

        counts = sorted(members.get(key, set()) | {1})
        _measure_shape(costs, key, factory, input_shape, classes, counts,
                       precision=precision, steps=steps, repeats=repeats)  # fmt: skip
    return costs


def _measure_shape(
    costs: Costs, key: str, factory, input_shape, classes: int, counts: list[int], *,
    precision: str, steps: int, repeats: int,
) -> None:  # fmt: skip
    import torch

    from benchharness.api import Data
    from benchharness.grouped import autocast, evaluate_members, fuse
    from benchmarks.grouped_seeds import build, speed

    spec = json.loads(key)
    batch_size, eval_bs = spec["batch_size"], spec["eval_batch_size"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((max(steps * batch_size, eval_bs), *input_shape), generator=gen)
    y = torch.randint(classes, (x.shape[0],), generator=gen)
    data = Data(x, y, x[:eval_bs], y[:eval_bs], classes)
    for m in counts:
        seeds = list(range(m))
        variant = "sequential" if m == 1 else "fused_cl"
        timed = speed(0.0, precision, data, seeds, steps=steps, repeats=repeats,
                      batch_size=batch_size, variants=(variant,), factory=factory)  # fmt: skip
        costs.step[(key, m)] = timed[variant]
        if m == 1:
            (model,) = build(0.0, seeds, factory)
            model.eval()

            def evaluate(model=model):
                with torch.no_grad(), autocast(precision, torch.device("cpu")):
                    model(data.test_x)
        else:
            fused = fuse(build(0.0, seeds, factory)).use_channels_last(True)

            def evaluate(fused=fused):
                evaluate_members(fused, data.test_x, data.test_y, eval_bs, precision)

        costs.eval[(key, m)] = _median_seconds(evaluate, repeats)
