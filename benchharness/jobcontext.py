"""The harness's TrainContext for one job (what a training scheme sees) and the progress
events a running job sends to the parent; nested trainings (a reference model, a
compressor's fine-tuning) get a child context of the same job."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from benchharness import augment, datacache, metrics, trained_cache
from benchharness.api import Compressed, Data
from benchharness.grouped.precision import autocast
from benchharness.matrix import Job
from benchharness.plugins import Registry, plugin_versions
from benchharness.records import CurvePoint
from benchharness.spec_sections import job_precision
from benchharness.training_api import Evaluation, Optimizer, TrainContext


@dataclass(frozen=True)
class Progress:
    """One progress event of a running job (sent to the parent for display)."""

    job_id: str
    phase: str
    step: int
    total: int | None
    values: dict[str, float]


Events = Callable[[Progress], None]


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
        validation: tuple[Tensor, Tensor] | None = None,
    ):
        self.job = job
        self.data = data
        self.device = device
        self.seed = job.seed
        self.generator = torch.Generator().manual_seed(job.seed)
        self._compressors = compressors
        self.used_compressors = False  # read by the runner: such a training is not cached
        self.registry = registry
        self.cache_dir = cache_dir
        self.events = events
        self.eval_batch_size = eval_batch_size
        self.phase_prefix = phase_prefix
        self.curves: list[CurvePoint] = []
        self.compressed: list[Compressed] | None = None
        self.reference_seconds: float | None = None
        self.reported: dict[str, float] = {}  # TrainContext.report: stored in extra
        # [data] validation, select, augment (issue 8, data part)
        self.validation = validation
        section = job.config.get("data") or {}
        self.select = str(section.get("select", "last"))
        self.augmentation = augment.from_data_section(section)
        self.precision = job_precision(job.config)

    @property
    def compressors(self) -> list[Any]:  # type: ignore[override]
        self.used_compressors = True
        return self._compressors

    def autocast(self) -> contextlib.AbstractContextManager:
        """The job's ``[compute] precision`` autocast on its device (a no-op for fp32)."""
        return autocast(self.precision, self.device)

    def evaluate(self, model: nn.Module) -> Evaluation:
        with self.autocast():
            return metrics.evaluate(
                model, self.data.test_x, self.data.test_y, self.eval_batch_size, self.device
            )

    def validate(self, model: nn.Module) -> Evaluation | None:
        if self.validation is None:
            return None
        x, y = self.validation
        with self.autocast():
            return metrics.evaluate(model, x, y, self.eval_batch_size, self.device)

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
        self.used_compressors = True
        self.compressed = list(compressed)

    def train_reference(self, model: nn.Module, optimizer: Mapping[str, Any]) -> nn.Module:
        plugin = self.registry.from_table("optimizer", optimizer)
        resolved = {"name": plugin.name, **plugin.options.model_dump(mode="json")}
        key = trained_cache.cache_key(
            "reference",
            training_inputs(self.job, self.registry, optimizer=resolved),
        )
        with trained_cache.claim(self.cache_dir, key, device=self.device) as entry:
            if entry.hit and entry.load_into(model):
                self.reference_seconds = entry.train_seconds
                self.log(1, 1, phase="reference_cached", cache_hit=1.0)
                return model
            sub = self.child("reference_", compressors=[])
            # Its own generator: the job's batch order must not depend on a cache hit.
            sub.generator = torch.Generator().manual_seed(self.seed)
            start = time.perf_counter()
            trained = plugin.train(model, sub)
            self.reference_seconds = time.perf_counter() - start
            self.curves.extend(sub.curves)
            entry.save(trained, self.reference_seconds, sub.curves)
            return trained

    def _optimizer(self, table: Mapping[str, Any]) -> Optimizer:
        plugin = self.registry.from_table("optimizer", table)
        assert isinstance(plugin, Optimizer)
        return plugin

    def child(self, phase_prefix: str, *, compressors: list[Any]) -> JobContext:
        """A context for a nested training (a reference, a fine-tuning) of this job."""
        return JobContext(
            self.job,
            self.data,
            self.device,
            self.registry,
            compressors,
            self.cache_dir,
            self.events,
            self.eval_batch_size,
            phase_prefix=self.phase_prefix + phase_prefix,
            validation=self.validation,
        )


def training_inputs(
    job: Job, registry: Registry, *, optimizer: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Everything that determines a trained model of ``job``: data, transforms, model,
    optimizer table (the job's own unless given), seed, and those plugins' versions."""
    config = job.config
    table = dict(optimizer) if optimizer is not None else config["optimizer"]
    used = [("dataset", config["dataset"]["name"]), ("model", config["model"]["name"])]
    used += [("transform", t["name"]) for t in datacache.as_list(config.get("transform"))]
    used.append(("optimizer", table["name"]))
    base = table.get("base")  # a wrapping scheme's base optimizer (e.g. the compander's)
    if isinstance(base, Mapping) and isinstance(base.get("name"), str):
        used.append(("optimizer", base["name"]))
    inputs = {
        "dataset": config["dataset"],
        "data": config.get("data"),
        "transform": config.get("transform"),
        "model": config["model"],
        "optimizer": table,
        "seed": job.seed,
        "versions": plugin_versions(registry, used),
    }
    if config.get("compute"):  # absent at its defaults: the keys of fp32 models stay
        inputs["compute"] = config["compute"]
    return inputs
