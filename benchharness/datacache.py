"""Datasets and transformed datasets, computed once per process and reused across jobs.

A transform is deterministic given (dataset, data section, transform tables), so its
output is keyed by exactly those and shared by every job (model, optimizer, seed) that
uses it. Given a cache directory, transformed datasets are also kept on disk
(:mod:`benchharness.transform_cache`, keyed by a hash of the input data's bytes and the
transforms' names, versions and options) and reused by later runs and other processes;
the in-memory cache stays in front of it. The ``[data]`` validation split is drawn here
too (seeded by ``subset_seed``, not the job's seed: every job of a study validates on
the same samples).
"""

from __future__ import annotations

import dataclasses
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchharness import transform_cache
from benchharness.api import Data
from benchharness.plugins import Registry
from benchharness.selection import validation_indices

_MAX_ENTRIES = 8
_cache: OrderedDict[str, Data] = OrderedDict()
# Fingerprints of held-out datasets (by memory key), and the (cache dir, entry key)
# pairs this process has found or written on disk: each is hashed or stored once.
_fingerprints: dict[str, str] = {}
_on_disk: set[tuple[str, str]] = set()


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))


def _remember(key: str, value: Data) -> Data:
    _cache[key] = value
    _cache.move_to_end(key)
    while len(_cache) > _MAX_ENTRIES:
        _cache.popitem(last=False)
    return value


def _lookup(key: str) -> Data | None:
    if key in _cache:
        _cache.move_to_end(key)
        return _cache[key]
    return None


def clear() -> None:
    _cache.clear()
    _fingerprints.clear()
    _on_disk.clear()


def as_list(section: Any) -> list[dict[str, Any]]:
    """A spec section that may be absent, one table, or an array of tables."""
    if section is None:
        return []
    if isinstance(section, dict):
        return [section]
    return list(section)


def _subset(
    x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if n is None or n >= x.shape[0]:
        return x, y
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=generator)[:n]
    return x[idx], y[idx]


def prepare(configs: list[dict[str, Any]], registry: Registry, data_dir: Path) -> None:
    """Load (and download, if missing) every dataset the configs use, once, up front, and
    draw their validation splits: a missing dataset or an impossible split is one error
    for the study, not one failure per job."""
    distinct = {_key(c["dataset"], c.get("data") or {}): c for c in configs}
    for config in distinct.values():
        _held_out(config, registry, data_dir)


def dataset_key(config: dict[str, Any]) -> str:
    """What identifies a job's dataset before transforms: its dataset and data sections."""
    return _key(config["dataset"], config.get("data") or {})


def remember_dataset(config: dict[str, Any], data: Data) -> None:
    """Use ``data`` as ``config``'s dataset (after its data section) in this process: a
    worker handed the dataset (e.g. from Ray's object store) need not load it again."""
    _remember(dataset_key(config), data)


def load_dataset(config: dict[str, Any], registry: Registry, data_dir: Path) -> Data:
    """The job's dataset after its `data` section's subsets, before the validation split
    and any transform."""
    data_section = config.get("data") or {}
    base_key = _key(config["dataset"], data_section)
    data = _lookup(base_key)
    if data is None:
        data = registry.from_table("dataset", config["dataset"]).load(data_dir)
        seed = int(data_section.get("subset_seed", 0))
        train_x, train_y = _subset(
            data.train_x, data.train_y, data_section.get("train_subset"), seed
        )
        test_x, test_y = _subset(data.test_x, data.test_y, data_section.get("test_subset"), seed)
        data = _remember(
            base_key, data.replace(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
        )
    return data


@dataclasses.dataclass(frozen=True)
class JobData:
    """A job's data, on the CPU.

    ``raw`` is after the `data` section (subsets, validation samples removed from the
    training split), before transforms; ``data`` the same after the transforms: what the
    job trains and is tested on. ``validation`` is the transformed (inputs, labels) of the
    validation split (``[data] validation``), or ``None``.
    """

    raw: Data
    data: Data
    validation: tuple[Tensor, Tensor] | None = None


def _held_out(config: dict[str, Any], registry: Registry, data_dir: Path) -> tuple[Data, int]:
    """The dataset with its validation samples moved out of the training split and ahead
    of the test samples (so transforms, fitted on the training inputs, treat them as the
    held-out data they are), and how many there are."""
    data_section = config.get("data") or {}
    fraction = float(data_section.get("validation", 0.0))
    data = load_dataset(config, registry, data_dir)
    if not fraction:
        return data, 0
    key = _key("held_out", config["dataset"], data_section)
    held = _lookup(key)
    if held is None:
        seed = int(data_section.get("subset_seed", 0))
        train_idx, val_idx = validation_indices(data.train_x.shape[0], fraction, seed)
        held = _remember(
            key,
            data.replace(
                train_x=data.train_x[train_idx],
                train_y=data.train_y[train_idx],
                test_x=torch.cat([data.train_x[val_idx], data.test_x]),
                test_y=torch.cat([data.train_y[val_idx], data.test_y]),
            ),
        )
    return held, held.test_x.shape[0] - data.test_x.shape[0]


def _without_validation(data: Data, n_val: int) -> tuple[Data, tuple[Tensor, Tensor] | None]:
    if not n_val:
        return data, None
    rest = data.replace(test_x=data.test_x[n_val:], test_y=data.test_y[n_val:])
    return rest, (data.test_x[:n_val], data.test_y[:n_val])


def load_job_data(
    config: dict[str, Any], registry: Registry, data_dir: Path, cache_dir: Path | None = None
) -> JobData:
    """The job's data: after its `data` section (subsets, validation split), before and
    after its transforms. With ``cache_dir``, transformed data is read from and written
    to its on-disk cache (``<cache_dir>/data/``)."""
    data_section = config.get("data") or {}
    held, n_val = _held_out(config, registry, data_dir)
    raw, _ = _without_validation(held, n_val)
    transforms = as_list(config.get("transform"))
    transformed = held
    if transforms:
        full_key = _key(config["dataset"], data_section, transforms)
        cached = _lookup(full_key)
        disk_key = None
        if cache_dir is not None:
            disk_key = _disk_key(config, held, transforms, registry)
        if cached is None:
            cached = _remember(
                full_key, _transform(held, transforms, registry, cache_dir, disk_key)
            )
        elif disk_key is not None and (str(cache_dir), disk_key) not in _on_disk:
            assert cache_dir is not None
            transform_cache.store_if_missing(cache_dir, disk_key, cached, held)
        if disk_key is not None:
            _on_disk.add((str(cache_dir), disk_key))
        transformed = cached
    data, validation = _without_validation(transformed, n_val)
    return JobData(raw, data, validation)


def _transform(
    held: Data,
    transforms: list[dict[str, Any]],
    registry: Registry,
    cache_dir: Path | None,
    disk_key: str | None,
) -> Data:
    def compute() -> Data:
        data = held
        for table in transforms:
            data = registry.from_table("transform", table).apply(data)
        return data

    if cache_dir is None or disk_key is None:
        return compute()
    return transform_cache.load_or_compute(cache_dir, disk_key, held, compute)


def _disk_key(
    config: dict[str, Any], held: Data, transforms: list[dict[str, Any]], registry: Registry
) -> str:
    """The on-disk key of the transformed data: what the transforms were applied to (its
    bytes) and each transform's name, version and options with their defaults."""
    held_key = _key("fingerprint", config["dataset"], config.get("data") or {})
    if held_key not in _fingerprints:
        _fingerprints[held_key] = transform_cache.fingerprint(held)
    resolved = []
    for table in transforms:
        plugin = registry.from_table("transform", table)
        options = plugin.options.model_dump(mode="json")
        resolved.append({"name": plugin.name, "version": plugin.version, "options": options})
    return transform_cache.entry_key(
        {
            "input": _fingerprints[held_key],
            "dataset": config["dataset"],
            "data": config.get("data") or {},
            "transforms": resolved,
        }
    )


def load(
    config: dict[str, Any], registry: Registry, data_dir: Path, cache_dir: Path | None = None
) -> tuple[Data, Data]:
    """(raw, transformed): :func:`load_job_data` without the validation split."""
    job_data = load_job_data(config, registry, data_dir, cache_dir)
    return job_data.raw, job_data.data
