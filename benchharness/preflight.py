"""Checks that need the data, run once when it is loaded and before any job trains.

A spec can be valid on paper and still unable to run: a ``[data] train_subset`` larger
than the dataset's training split, or a model that cannot take the (transformed) input
shape (``lenet5`` on 8×8 ``digits``). Each is one :class:`BenchError` line naming the spec
and the key, instead of every job failing later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from benchharness import datacache
from benchharness.errors import BenchError, first_line
from benchharness.keypaths import short
from benchharness.plugins import Registry

__all__ = ["check_jobs"]

_SPLITS = (("train_subset", "train_x", "training"), ("test_subset", "test_x", "test"))


def check_jobs(
    jobs: Iterable[Any], registry: Registry, data_dir: Any, cache_dir: Path | None = None
) -> None:
    """Raise one BenchError (one line per problem) if any job cannot run on its data.

    ``jobs`` have ``config`` and ``spec_name`` (:class:`benchharness.matrix.Job`). The
    datasets must be loadable (``datacache.prepare`` has run); every distinct model is
    built on the CPU and given one input of the data's shape (batch 1, no gradients).
    With ``cache_dir``, transformed data comes from (and goes to) its on-disk cache, so
    the jobs' workers load what is transformed here.
    """
    problems: list[str] = []
    seen_data: set[str] = set()
    seen_models: set[str] = set()
    for job in jobs:
        config = job.config
        data_key = _key(config["dataset"], config.get("data"))
        if data_key not in seen_data:
            seen_data.add(data_key)
            problems += _subset_problems(job.spec_name, config, registry, data_dir)
        model_key = _key(config["dataset"], config.get("data"), config.get("transform"))
        model_key += _key(config["model"])
        if model_key not in seen_models:
            seen_models.add(model_key)
            problem = _model_problem(job.spec_name, config, registry, data_dir, cache_dir)
            if problem is not None:
                problems.append(problem)
    if problems:
        raise BenchError("\n".join(dict.fromkeys(problems)))


def _subset_problems(
    spec_name: str, config: dict[str, Any], registry: Registry, data_dir: Any
) -> list[str]:
    data_section = config.get("data") or {}
    wanted = {key: data_section.get(key) for key, _, _ in _SPLITS}
    if all(n is None for n in wanted.values()):
        return []
    loaded = datacache.load_dataset(config, registry, data_dir)
    out = []
    for key, attr, split in _SPLITS:
        have = int(getattr(loaded, attr).shape[0])
        if wanted[key] is not None and wanted[key] > have:
            out.append(
                f"{spec_name}: data.{key} — {wanted[key]} is more than the {have} {split} "
                f"samples of {short(config['dataset'])}"
            )
    return out


def _model_problem(
    spec_name: str,
    config: dict[str, Any],
    registry: Registry,
    data_dir: Any,
    cache_dir: Path | None = None,
) -> str | None:
    """Why the job's model cannot take its data's input, or None.

    Only shape problems count: a model whose build fails for this input shape but not for
    a larger one, or whose forward pass fails on (or gives other than one score per class
    for) one input. A build that fails whatever the shape is the plugin's own error, which
    is stored with each of its jobs like any other (the study goes on)."""
    _, data = datacache.load(config, registry, data_dir, cache_dir)
    shape = tuple(data.input_shape)
    where = f"{spec_name}: model — {short(config['model'])} on {short(config['dataset'])}"
    if config.get("transform"):
        where += f" after {short(config['transform'])}"
    plugin = registry.from_table("model", config["model"])
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        try:
            model = plugin.build(shape, data.num_classes)
        # a plugin may raise anything, even KeyboardInterrupt: classify it, never crash here
        except (Exception, KeyboardInterrupt) as error:
            if not _builds(plugin, _larger(shape), data.num_classes):
                return None
            return f"{where} cannot take inputs of shape {shape}: {first_line(error)}"
        try:
            model.eval()
            out = model(data.train_x[:1])
        except Exception as error:
            return f"{where} cannot take inputs of shape {shape}: {first_line(error)}"
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, data.num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return (
            f"{where}: gives output {got} for one input of shape {shape}, "
            f"not (1, {data.num_classes}) class scores"
        )
    return None


def _larger(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A generous input shape of the same layout: channels kept, every other side ≥ 64."""
    if len(shape) == 1:
        return (max(shape[0], 1024),)
    return (shape[0], *(max(side, 64) for side in shape[1:]))


def _builds(plugin: Any, shape: tuple[int, ...], num_classes: int) -> bool:
    try:
        plugin.build(shape, num_classes)
    except (Exception, KeyboardInterrupt):
        return False
    return True


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
