"""The post-training compression stage of a job: each compressor of the spec, in order,
compresses the trained model through :meth:`~benchharness.Compressor.compress_model`,
its result is checked, and Δ(Θ) is loaded into the model before the next one runs (so a
later compressor sees the earlier ones' layers already compressed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from benchharness.api import Compressed, Compressor
from benchharness.compression import CompressionContext, check_compressed
from benchharness.errors import BenchError
from benchharness.matrix import digest

ContextFactory = Callable[[Compressor, torch.Generator], CompressionContext]


def weight_macs(model: nn.Module, per_module_flops: Mapping[str, int]) -> dict[str, int]:
    """Dense MACs per sample of every Linear/Conv layer, keyed by its weight's name, from
    torch's per-module FLOP counts (2 FLOPs per multiply-accumulate)."""
    macs: dict[str, int] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            flops = per_module_flops.get(module_name)
            if flops is not None:
                macs[f"{module_name}.weight" if module_name else "weight"] = flops // 2
    return macs


def compressor_generator(seed: int, index: int, table: Mapping[str, Any]) -> torch.Generator:
    """The generator of the ``index``-th compressor of a job: seeded from the job's seed
    and the compressor's table, so changing any of its options (its own seed included)
    gives another stream while a rerun gives the same."""
    value = int(digest({"seed": seed, "index": index, "compressor": dict(table)})[:15], 16)
    return torch.Generator().manual_seed(value)


def compress_trained(
    model: nn.Module,
    compressors: list[Compressor],
    tables: list[Mapping[str, Any]],
    make_context: ContextFactory,
    seed: int,
) -> tuple[list[Compressed], dict[str, float]]:
    """Compress ``model`` in place with each compressor; returns Θ (one part per
    compressor that selected something) and the compressors' own metrics, named
    ``<compressor>.<key>`` (plus ``compress_seconds`` in total)."""
    parts: list[Compressed] = []
    reported: dict[str, float] = {}
    owner: dict[str, str] = {}
    params = dict(model.named_parameters())
    start = time.perf_counter()
    for index, (compressor, table) in enumerate(zip(compressors, tables, strict=True)):
        selected = compressor.select(model)
        for name in selected:
            if name in owner:
                raise BenchError(
                    f"compressors '{owner[name]}' and '{compressor.name}' both select {name}; "
                    "use the `additive` compressor to combine them on one tensor"
                )
            owner[name] = compressor.name
        if not selected:
            continue
        ctx = make_context(compressor, compressor_generator(seed, index, table))
        model.eval()
        part = check_compressed(compressor.name, compressor.compress_model(ctx), selected)
        with torch.no_grad():
            for name, value in part.decompress().items():
                params[name].copy_(value)
        parts.append(part)
        for key, value in ctx.metrics.items():
            reported[f"{compressor.name}.{key}"] = value
    reported["compress_seconds"] = time.perf_counter() - start
    return parts, reported
