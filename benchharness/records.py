"""What one finished job produces: the record the executor hands to the store."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Literal

Status = Literal["completed", "failed"]

# Metrics with their own column in `runs` (anything else goes to the `extra` JSON column).
METRIC_COLUMNS: dict[str, str] = {
    "test_accuracy": "DOUBLE",  # fraction in [0, 1]
    "test_loss": "DOUBLE",
    "params": "BIGINT",  # number of parameters
    "flops": "BIGINT",  # forward FLOPs per sample, torch's FlopCounterMode (dense)
    "flops_effective": "BIGINT",  # after compression (pruned weights not counted...)
    "size_bits": "BIGINT",  # model storage in bits
    "compression_ratio": "DOUBLE",  # dense 32-bit bits / size_bits
    "compression_realised": "BOOLEAN",  # saving exists in the exported model
    "input_values": "BIGINT",  # numbers stored per input sample after the transform
    "input_ratio": "DOUBLE",  # raw stored bits / stored bits per sample (Data.stored_input_bits)
    "latency_b1_median_ms": "DOUBLE",
    "latency_b1_p90_ms": "DOUBLE",
    "latency_batch_median_ms": "DOUBLE",
    "latency_batch_p90_ms": "DOUBLE",
    "latency_batch_size": "INTEGER",
    "train_seconds": "DOUBLE",  # wall time of the training (of the cached one, if reused)
    "train_reused": "BOOLEAN",  # the trained model came from the train-once cache
    "compress_seconds": "DOUBLE",  # wall time of post-training compression
    "dense_test_accuracy": "DOUBLE",  # the trained model's, before post-training compression
    "transform_flops": "BIGINT",  # FLOPs per sample of the input transforms (None: unknown)
    "flops_total": "BIGINT",  # flops_effective + transform_flops
    # latency of the deployable model: Δ(Θ) rebuilt from its stored form (factor layers,
    # smaller layers, sparse weights) where the compressors provide one; latency_* above is
    # the evaluated model's (dense Δ(Θ))
    "latency_deployed_b1_median_ms": "DOUBLE",
    "latency_deployed_b1_p90_ms": "DOUBLE",
    "latency_deployed_batch_median_ms": "DOUBLE",
    "latency_deployed_batch_p90_ms": "DOUBLE",
    # the epoch whose weights the training returned ([data] select: the last, or the best
    # on the validation split); None for schemes that return their own final model (LC...)
    "selected_epoch": "INTEGER",
}

# Short names for metric columns, accepted by `bench report --objectives` and in claims.
METRIC_ALIASES: dict[str, str] = {
    "accuracy": "test_accuracy",
    "loss": "test_loss",
    "flops": "flops",
    "effective_flops": "flops_effective",
    "total_flops": "flops_total",
    "params": "params",
    "size": "size_bits",
    "bits": "size_bits",
    "ratio": "compression_ratio",
    "latency": "latency_b1_median_ms",
    "time": "train_seconds",
}

PROVENANCE_COLUMNS: dict[str, str] = {
    "git_commit": "VARCHAR",
    "package_version": "VARCHAR",
    "plugin_versions": "JSON",
    "torch_version": "VARCHAR",
    "cuda_version": "VARCHAR",
    "device": "VARCHAR",
    "cpu": "VARCHAR",
    "hostname": "VARCHAR",
    "torch_threads": "INTEGER",  # torch.get_num_threads() while the job ran
    "started_at": "TIMESTAMP",
    "finished_at": "TIMESTAMP",
}


@dataclasses.dataclass(frozen=True)
class CurvePoint:
    """One point of a per-step curve: e.g. phase "train", step = epoch, name "train_loss"."""

    phase: str
    step: int
    name: str
    value: float


@dataclasses.dataclass
class RunRecord:
    job_id: str
    config_id: str  # hash of the configuration without the seed: groups seeds
    spec_name: str
    spec_hash: str
    quick: bool
    seed: int
    config: dict[str, Any]  # fully resolved configuration
    axes: dict[str, Any]  # matrix axis values of this job, by dotted path (no seed)
    status: Status
    error: str | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)  # METRIC_COLUMNS keys
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # any other metric
    curves: list[CurvePoint] = dataclasses.field(default_factory=list)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)  # PROVENANCE_COLUMNS
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def error_line(self) -> str:
        """The first line of the error, for one-line summaries."""
        lines = (self.error or "").splitlines()
        return lines[0] if lines else "(no error message)"
