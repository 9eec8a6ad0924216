"""Datasets and transformed datasets, computed once per process and reused across jobs.

A transform is deterministic given (dataset, data section, transform tables), so its
output is keyed by exactly those and shared by every job (model, optimizer, seed) that
uses it.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from benchharness.api import Data
from benchharness.plugins import Registry

_MAX_ENTRIES = 8
_cache: OrderedDict[str, Data] = OrderedDict()


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
    """Load (and download, if missing) every dataset the configs use, once, up front:
    a missing dataset is one error for the study, not one failure per job."""
    distinct = {_key(c["dataset"], c.get("data") or {}): c for c in configs}
    for config in distinct.values():
        load_dataset(config, registry, data_dir)


def dataset_key(config: dict[str, Any]) -> str:
    """What identifies a job's dataset before transforms: its dataset and data sections."""
    return _key(config["dataset"], config.get("data") or {})


def remember_dataset(config: dict[str, Any], data: Data) -> None:
    """Use ``data`` as ``config``'s dataset (after its data section) in this process: a
    worker handed the dataset (e.g. from Ray's object store) need not load it again."""
    _remember(dataset_key(config), data)


def load_dataset(config: dict[str, Any], registry: Registry, data_dir: Path) -> Data:
    """The job's dataset after its `data` section (subsets), before any transform."""
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


def load(config: dict[str, Any], registry: Registry, data_dir: Path) -> tuple[Data, Data]:
    """(raw, transformed): the job's data after its `data` section (subsets), before and
    after its transforms, on the CPU."""
    data_section = config.get("data") or {}
    data = load_dataset(config, registry, data_dir)
    transforms = as_list(config.get("transform"))
    if not transforms:
        return data, data
    full_key = _key(config["dataset"], data_section, transforms)
    transformed = _lookup(full_key)
    if transformed is None:
        transformed = data
        for table in transforms:
            transformed = registry.from_table("transform", table).apply(transformed)
        transformed = _remember(full_key, transformed)
    return data, transformed
