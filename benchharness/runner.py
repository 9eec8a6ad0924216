"""The per-job pipeline: data → transforms → model → training scheme → compressors →
evaluation and measurements. Runs in whichever process owns the job's device; never
touches the database (it returns a RunRecord)."""

from __future__ import annotations

import os
import random
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchharness import datacache, metrics, provenance
from benchharness.api import Compressed, Data, Evaluation, TrainContext
from benchharness.errors import BenchError, Diverged
from benchharness.matrix import Job, digest
from benchharness.plugins import Registry, plugin_versions
from benchharness.records import CurvePoint, RunRecord


@dataclass(frozen=True)
class Progress:
    """One progress event of a running job (sent to the parent for display)."""

    job_id: str
    phase: str
    step: int
    total: int | None
    values: dict[str, float]


Events = Callable[[Progress], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class JobContext(TrainContext):
    """The harness's TrainContext for one job."""

    def __init__(
        self,
        job: Job,
        data: Data,
        device: torch.device,
        registry: Registry,
        compressors: list[Any],
        cache_dir: Path,
        events: Events,
        eval_batch_size: int,
        phase_prefix: str = "",
    ):
        self.job = job
        self.data = data
        self.device = device
        self.seed = job.seed
        self.generator = torch.Generator().manual_seed(job.seed)
        self.compressors = compressors
        self.registry = registry
        self.cache_dir = cache_dir
        self.events = events
        self.eval_batch_size = eval_batch_size
        self.phase_prefix = phase_prefix
        self.curves: list[CurvePoint] = []
        self.compressed: list[Compressed] | None = None

    def evaluate(self, model: nn.Module) -> Evaluation:
        return metrics.evaluate(
            model, self.data.test_x, self.data.test_y, self.eval_batch_size, self.device
        )

    def log(
        self, step: int, total: int | None = None, *, phase: str = "train", **values: float
    ) -> None:
        phase = self.phase_prefix + phase
        for name, value in values.items():
            self.curves.append(CurvePoint(phase, int(step), name, float(value)))
        self.events(
            Progress(self.job.id, phase, int(step), total, {k: float(v) for k, v in values.items()})
        )

    def set_compressed(self, compressed: list[Compressed]) -> None:
        self.compressed = list(compressed)

    def train_reference(self, model: nn.Module, optimizer: Mapping[str, Any]) -> nn.Module:
        plugin = self.registry.from_table("optimizer", optimizer)
        resolved = {"name": plugin.name, **plugin.options.model_dump(mode="json")}
        key = digest(
            {k: self.job.config.get(k) for k in ("dataset", "data", "transform", "model", "seed")}
            | {"reference_optimizer": resolved}
        )
        path = self.cache_dir / f"reference-{key}.pt"
        if path.exists():
            model.load_state_dict(torch.load(path, map_location=self.device, weights_only=True))
            self.log(1, 1, phase="reference_cached", cache_hit=1.0)
            return model
        sub = JobContext(
            self.job,
            self.data,
            self.device,
            self.registry,
            [],
            self.cache_dir,
            self.events,
            self.eval_batch_size,
            phase_prefix="reference_",
        )
        # Its own generator: the job's batch order must not depend on a cache hit.
        sub.generator = torch.Generator().manual_seed(self.seed)
        trained = plugin.train(model, sub)
        self.curves.extend(sub.curves)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save(trained.state_dict(), tmp)
        os.replace(tmp, path)  # atomic: a concurrent reader sees all or nothing
        return trained


def place(data: Data, device: torch.device) -> Data:
    """The data on ``device`` if it fits comfortably (half the free memory), else on the CPU."""
    if device.type == "cuda":
        tensors = (data.train_x, data.train_y, data.test_x, data.test_y)
        needed = sum(t.numel() * t.element_size() for t in tensors)
        free, _total = torch.cuda.mem_get_info(device)
        if needed > free // 2:
            return data
    return data.to(device)


def apply_compressors(model: nn.Module, compressors: list[Any]) -> list[Compressed]:
    """Compress the trained model's weights with each compressor and load Δ(Θ) back."""
    parts: list[Compressed] = []
    seen: dict[str, str] = {}
    params = dict(model.named_parameters())
    for compressor in compressors:
        weights = compressor.select(model)
        for name in weights:
            if name in seen:
                raise BenchError(
                    f"compressors '{seen[name]}' and '{compressor.name}' both select {name}; "
                    "use the `additive` compressor to combine them on one tensor"
                )
            seen[name] = compressor.name
        if not weights:
            continue
        part = compressor.compress({n: w.detach() for n, w in weights.items()})
        with torch.no_grad():
            for name, value in part.decompress().items():
                params[name].copy_(value)
        parts.append(part)
    return parts


def failed_record(job: Job, *, started_at: datetime, error: str | None = None) -> RunRecord:
    """A record of ``job`` with status failed: what is stored unless the job completes."""
    return RunRecord(
        job_id=job.id,
        config_id=job.config_id,
        spec_name=job.spec_name,
        spec_hash=job.spec_hash,
        quick=job.quick,
        seed=job.seed,
        config=job.config,
        axes=job.axes,
        status="failed",
        error=error,
        started_at=started_at,
    )


def run_job(
    job: Job,
    *,
    registry: Registry,
    device: torch.device,
    data_dir: Path,
    cache_dir: Path,
    events: Events,
) -> RunRecord:
    """Run one job end to end. Never raises for a job's own failure: a failed RunRecord
    carries the error instead, so the other jobs go on."""
    record = failed_record(job, started_at=datetime.now(UTC))
    used = [
        ("dataset", job.config["dataset"]["name"]),
        ("model", job.config["model"]["name"]),
        ("optimizer", job.config["optimizer"]["name"]),
    ]
    used += [("transform", t["name"]) for t in datacache.as_list(job.config.get("transform"))]
    used += [("compressor", c["name"]) for c in datacache.as_list(job.config.get("compressor"))]
    ctx: JobContext | None = None
    try:
        record.provenance = provenance.collect(device, plugin_versions(registry, used))
        ctx = _run(job, record, registry, device, data_dir, cache_dir, events)
        record.status = "completed"
    except Diverged as exc:
        record.error = f"diverged: {exc}"
    except BenchError as exc:
        record.error = str(exc) or type(exc).__name__
    except Exception as exc:  # a plugin's bug must not stop the study
        record.error = f"{type(exc).__name__}: {exc}"
        record.extra["traceback"] = traceback.format_exc()
    finally:
        if ctx is not None:
            record.curves = ctx.curves
        record.finished_at = datetime.now(UTC)
    return record


def _run(
    job: Job,
    record: RunRecord,
    registry: Registry,
    device: torch.device,
    data_dir: Path,
    cache_dir: Path,
    events: Events,
) -> JobContext:
    config = job.config
    measure = config.get("measure") or {}
    raw, data = datacache.load(config, registry, data_dir)
    data = place(data, device)

    seed_everything(job.seed)
    model = registry.from_table("model", config["model"]).build(data.input_shape, data.num_classes)
    model = model.to(device)
    count_flops = bool(measure.get("flops", True))
    flops, per_module = (
        metrics.layer_flops(model, data.input_shape, device) if count_flops else (None, {})
    )

    compressors = [
        registry.from_table("compressor", c) for c in datacache.as_list(config.get("compressor"))
    ]
    optimizer = registry.from_table("optimizer", config["optimizer"])
    ctx = JobContext(
        job,
        data,
        device,
        registry,
        compressors,
        cache_dir,
        events,
        int(measure.get("eval_batch_size", 1000)),
    )
    record.curves = ctx.curves
    train_start = time.perf_counter()
    model = optimizer.train(model, ctx)
    train_seconds = time.perf_counter() - train_start

    compressed = ctx.compressed
    if compressed is None:
        compressed = apply_compressors(model, compressors)
    final = ctx.evaluate(model)

    dense_bits, bits = metrics.size_bits(model, compressed)
    m = record.metrics
    m.update(
        test_accuracy=final.accuracy,
        test_loss=final.loss,
        params=metrics.count_params(model),
        flops=flops,
        flops_effective=metrics.effective_flops(flops, per_module, compressed)
        if flops is not None
        else None,
        size_bits=bits,
        compression_ratio=dense_bits / bits if bits else None,
        compression_realised=all(part.realised for part in compressed) if compressed else None,
        input_values=data.stored_input_values,
        input_ratio=raw.stored_input_values / data.stored_input_values,
        train_seconds=train_seconds,
    )
    if measure.get("latency", True):
        batch = int(config["optimizer"].get("batch_size", 128))
        repeats, warmup = (
            int(measure.get("latency_repeats", 30)),
            int(measure.get("latency_warmup", 5)),
        )
        m["latency_b1_median_ms"], m["latency_b1_p90_ms"] = metrics.latency_ms(
            model, data.input_shape, 1, device, repeats=repeats, warmup=warmup
        )
        m["latency_batch_median_ms"], m["latency_batch_p90_ms"] = metrics.latency_ms(
            model, data.input_shape, batch, device, repeats=repeats, warmup=warmup
        )
        m["latency_batch_size"] = batch
    if measure.get("activation_stats", True):
        record.extra.update(metrics.activation_stats(model, data.test_x[:256].to(device)))
    return ctx
