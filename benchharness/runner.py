"""The per-job pipeline: data → transforms → model → training scheme → compressors →
evaluation and measurements. Runs in whichever process owns the job's device; never
touches the database (it returns a RunRecord)."""

from __future__ import annotations

import dataclasses
import random
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchharness import datacache, deploy, metrics, provenance, trained_cache
from benchharness.api import Data
from benchharness.compressing import compress_trained, weight_macs
from benchharness.compression import CompressionContext
from benchharness.errors import BenchError, Diverged
from benchharness.jobcontext import Events, JobContext, training_inputs
from benchharness.matrix import Job
from benchharness.plugins import Registry, plugin_versions
from benchharness.records import RunRecord
from benchharness.selection import selected_epoch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def place(data: Data, device: torch.device) -> Data:
    """The data on ``device`` if it fits comfortably (half the free memory), else on the CPU."""
    if device.type == "cuda":
        tensors = (data.train_x, data.train_y, data.test_x, data.test_y)
        needed = sum(t.numel() * t.element_size() for t in tensors)
        free, _total = torch.cuda.mem_get_info(device)
        if needed > free // 2:
            return data
    return data.to(device)


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

    def run() -> None:
        train_and_complete(prepare(job, record, registry, device, data_dir, cache_dir, events))

    capture(record, run)
    record.finished_at = datetime.now(UTC)
    return record


def capture(record: RunRecord, step: Callable[[], Any], *, completes: bool = True) -> bool:
    """Run ``step`` of ``record``'s job; return whether it succeeded.

    A job's own failure (a divergence, a :class:`BenchError`, a plugin's bug, with its
    traceback) is written into ``record``, whose status stays failed, instead of raised.
    On success the status becomes completed, unless ``completes`` is false (a first part
    of the job).
    """
    try:
        step()
    except Diverged as exc:
        record.error = f"diverged: {exc}"
    except BenchError as exc:
        record.error = str(exc) or type(exc).__name__
    except Exception as exc:  # a plugin's bug must not stop the study
        record.error = f"{type(exc).__name__}: {exc}"
        record.extra["traceback"] = traceback.format_exc()
    else:
        if completes:
            record.status = "completed"
        return True
    return False


@dataclasses.dataclass
class JobRun:
    """One job between :func:`prepare` and :func:`complete`: everything its training
    and the rest of its pipeline need. ``rng`` holds the global random states as
    training found them (restored before :func:`complete` by a caller that trained
    other jobs in between: see :mod:`benchharness.grouped_runner`)."""

    job: Job
    record: RunRecord
    registry: Registry
    device: torch.device
    raw: Data
    data: Data
    model: nn.Module
    optimizer: Any
    ctx: JobContext
    compressors: list[Any]
    tables: list[dict[str, Any]]
    layer_macs: dict[str, int]
    flops: int | None
    per_module: dict[str, int]
    rng: tuple[Any, Any, torch.Tensor, torch.Tensor | None]

    def restore_rng(self) -> None:
        state_random, state_numpy, state_torch, state_cuda = self.rng
        random.setstate(state_random)
        np.random.set_state(state_numpy)
        torch.set_rng_state(state_torch)
        if state_cuda is not None:
            torch.cuda.set_rng_state(state_cuda, self.device)


def prepare(
    job: Job,
    record: RunRecord,
    registry: Registry,
    device: torch.device,
    data_dir: Path,
    cache_dir: Path,
    events: Events,
) -> JobRun:
    """Everything up to training: provenance, data, the seeded model, FLOPs, compressors,
    the optimizer plugin and the job's context (whose curves are ``record``'s)."""
    config = job.config
    used = [
        ("dataset", config["dataset"]["name"]),
        ("model", config["model"]["name"]),
        ("optimizer", config["optimizer"]["name"]),
    ]
    used += [("transform", t["name"]) for t in datacache.as_list(config.get("transform"))]
    used += [("compressor", c["name"]) for c in datacache.as_list(config.get("compressor"))]
    record.provenance = provenance.collect(device, plugin_versions(registry, used))
    measure = config.get("measure") or {}
    job_data = datacache.load_job_data(config, registry, data_dir, cache_dir)
    raw, data = job_data.raw, place(job_data.data, device)
    validation = None
    if job_data.validation is not None:  # held where the data is: on the device if it fits
        val_x, val_y = job_data.validation
        validation = (val_x.to(data.test_x.device), val_y.to(data.test_x.device))

    seed_everything(job.seed)
    model = registry.from_table("model", config["model"]).build(data.input_shape, data.num_classes)
    model = model.to(device)
    tables = datacache.as_list(config.get("compressor"))
    flops, per_module = (
        metrics.layer_flops(model, data.input_shape, device)
        if bool(measure.get("flops", True)) or tables
        else (None, {})
    )
    compressors = [registry.from_table("compressor", c) for c in tables]
    layer_macs = weight_macs(model, per_module)
    for compressor in compressors:
        compressor.layer_macs = dict(layer_macs)
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
        validation=validation,
    )
    record.curves = ctx.curves
    cuda_rng = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda_rng)
    return JobRun(
        job,
        record,
        registry,
        device,
        raw,
        data,
        model,
        optimizer,
        ctx,
        compressors,
        tables,
        layer_macs,
        flops,
        per_module,
        rng,
    )


def train_and_complete(job_run: JobRun) -> None:
    """The rest of a prepared job: its training (or the cached result), then
    :func:`complete`."""
    model, train_seconds, reused = _train(
        job_run.job, job_run.model, job_run.optimizer, job_run.ctx
    )
    complete(job_run, model, train_seconds, reused)


def complete(job_run: JobRun, model: nn.Module, train_seconds: float, reused: bool) -> None:
    """Everything after training ``model``: selection, post-training compression, the
    final evaluation and the measurements, into the job's record."""
    job, record, ctx = job_run.job, job_run.record, job_run.ctx
    registry, device, data, raw = job_run.registry, job_run.device, job_run.data, job_run.raw
    config = job.config
    measure = config.get("measure") or {}
    count_flops = bool(measure.get("flops", True))
    compressors, tables = job_run.compressors, job_run.tables
    flops, per_module, layer_macs = job_run.flops, job_run.per_module, job_run.layer_macs
    record.metrics["selected_epoch"] = selected_epoch(ctx.curves, ctx.select)

    compressed = ctx.compressed
    compress_metrics: dict[str, float] = {}
    if compressed is None:

        def make_context(compressor: Any, generator: torch.Generator) -> CompressionContext:
            return CompressionContext(
                model,
                data.train_x,
                data.train_y,
                seed=job.seed,
                device=device,
                generator=generator,
                layer_macs=layer_macs,
                fine_tuner=lambda m, table: _fine_tune(ctx, compressor.name, m, table),
                logger=lambda *a, phase="compress", **v: ctx.log(
                    *a, phase=f"{compressor.name}_{phase}", **v
                ),
            )

        if compressors:
            record.metrics["dense_test_accuracy"] = ctx.evaluate(model).accuracy
        compressed, compress_metrics = compress_trained(
            model, compressors, tables, make_context, job.seed
        )
    final = ctx.evaluate(model)

    transform_flops = _transform_flops(registry, config, raw.input_shape) if count_flops else None
    flops_effective = (
        metrics.effective_flops(flops, per_module, compressed)
        if count_flops and flops is not None
        else None
    )
    dense_bits, bits = metrics.size_bits(model, compressed)
    m = record.metrics
    m.update(
        test_accuracy=final.accuracy,
        test_loss=final.loss,
        params=metrics.count_params(model),
        flops=flops if count_flops else None,
        flops_effective=flops_effective,
        transform_flops=transform_flops,
        flops_total=flops_effective + transform_flops
        if flops_effective is not None and transform_flops is not None
        else None,
        size_bits=bits,
        compression_ratio=dense_bits / bits if bits else None,
        compression_realised=all(part.realised for part in compressed) if compressed else None,
        input_values=data.stored_input_values,
        input_ratio=raw.stored_input_bits / data.stored_input_bits,
        train_seconds=train_seconds,
        train_reused=reused,
        compress_seconds=compress_metrics.pop("compress_seconds", None),
    )
    record.extra.update(compress_metrics)
    record.extra.update(ctx.reported)  # TrainContext.report: e.g. a wrapper's overhead
    if ctx.reference_seconds is not None:
        record.extra["reference_seconds"] = ctx.reference_seconds
    if measure.get("latency", True):
        batch = int(measure.get("latency_batch_size", 128))
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
        # the same model run from Θ's stored form (factors, smaller or sparse layers)
        deployed = deploy.deployable_model(model, compressed or [])
        if deployed is not None:
            deploy.check_outputs(model, deployed, data.test_x[:64].to(device))
            for size, key in ((1, "b1"), (batch, "batch")):
                (
                    m[f"latency_deployed_{key}_median_ms"],
                    m[f"latency_deployed_{key}_p90_ms"],
                ) = metrics.latency_ms(
                    deployed, data.input_shape, size, device, repeats=repeats, warmup=warmup
                )
    if measure.get("activation_stats", True):
        record.extra.update(metrics.activation_stats(model, data.test_x[:256].to(device)))


def _transform_flops(
    registry: Registry, config: dict[str, Any], input_shape: tuple[int, ...]
) -> int | None:
    """FLOPs per sample of the job's input transforms (0 without any; None if unknown)."""
    total = 0
    for table in datacache.as_list(config.get("transform")):
        flops = registry.from_table("transform", table).flops(input_shape)
        if flops is None:
            return None
        total += int(flops)
    return total


def _train(
    job: Job, model: nn.Module, optimizer: Any, ctx: JobContext
) -> tuple[nn.Module, float, bool]:
    """Train ``model`` (or reuse the cached result): (model, train_seconds, reused).

    A job with post-training compressors caches its trained model under the hash of
    :func:`training_inputs`, so jobs that differ only in compressor settings train once.
    ``train_seconds`` is the training's wall time either way (a reuse reports the time
    the cached training took). Schemes that compress during training (they read
    ``ctx.compressors``) depend on the compressors and are never cached.
    """
    cacheable = bool(ctx._compressors) and not getattr(optimizer, "uses_compressors", False)
    if not cacheable:
        start = time.perf_counter()
        model = optimizer.train(model, ctx)
        return model, time.perf_counter() - start, False
    key = trained_cache.cache_key("trained", training_inputs(job, ctx.registry))
    with trained_cache.claim(ctx.cache_dir, key, device=ctx.device) as entry:
        if entry.problem:
            ctx.log(1, 1, phase="cache", discarded=1.0)
        if entry.hit and entry.load_into(model):
            ctx.curves.extend(entry.curves)
            assert entry.train_seconds is not None
            return model, entry.train_seconds, True
        start = time.perf_counter()
        model = optimizer.train(model, ctx)
        seconds = time.perf_counter() - start
        if not ctx.used_compressors:
            entry.save(model, seconds, list(ctx.curves))
        return model, seconds, False


def _fine_tune(
    ctx: JobContext, owner: str, model: nn.Module, table: Mapping[str, Any]
) -> nn.Module:
    """Train ``model`` with the optimizer plugin of ``table`` on the job's training data
    (curves under ``finetune_<phase>``); a compressor's fine-tuning service."""
    plugin = ctx.registry.from_table("optimizer", table)
    if getattr(plugin, "uses_compressors", False):
        raise BenchError(
            f"compressor {owner}: cannot fine-tune with optimizer {plugin.name}, "
            "a scheme that compresses by itself; use e.g. sgd or adam"
        )
    sub = ctx.child("finetune_", compressors=[])
    tuned = plugin.train(model, sub)
    ctx.curves.extend(sub.curves)
    return tuned
