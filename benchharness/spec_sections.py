"""The spec's own sections, as pydantic models: the harness's ``[data]``, ``[compute]``
and ``[measure]`` (part of every job's configuration), ``[run]`` and ``[resources]`` (how
the study runs; never part of a job id) and ``[[claims]]``. :mod:`benchharness.spec`
validates a spec's tables against them.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
)

__all__ = [
    "HARNESS_SECTIONS",
    "LATER_SECTIONS",
    "PRECISIONS",
    "Claim",
    "ComputeOptions",
    "DataOptions",
    "MeasureOptions",
    "Precision",
    "ResourceOptions",
    "RunOptions",
    "job_precision",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataOptions(_Section):
    """``[data]``: which part of the dataset a job uses, the validation split that model
    selection may look at (never the test split), and training-batch augmentation.

    The keys added after the first release (validation, select, augment, crop_padding,
    crop_padding_mode) are left out of the resolved configuration while they have their
    default values, so the ids of existing jobs, which hash it, do not change.
    """

    train_subset: PositiveInt | None = Field(
        None, description="train on this many samples (a seeded random subset); all if absent"
    )
    test_subset: PositiveInt | None = Field(
        None, description="evaluate on this many test samples; all if absent"
    )
    subset_seed: NonNegativeInt = Field(
        0, description="seed of the subset draws and of the validation split"
    )
    validation: float = Field(
        0.0,
        description="fraction of the training samples (after train_subset) held out as a "
        "validation split, in [0, 1): a seeded random draw, disjoint from the training and "
        "test samples; validation loss and accuracy are logged every epoch. 0 = none",
    )
    select: Literal["last", "best_val"] = Field(
        "last",
        description="which epoch's weights a training returns: 'last', or 'best_val' = the "
        "epoch with the highest validation accuracy (needs validation > 0); the test split "
        "is only ever evaluated, never selected on. The chosen epoch is stored as "
        "selected_epoch",
    )
    augment: list[Literal["crop", "flip"]] = Field(
        default_factory=list,
        description="training-batch augmentation on the job's device, seeded by the job: "
        "'crop' = random crop of the image padded by crop_padding on each side, 'flip' = "
        "horizontal flip with probability 1/2; e.g. ['crop', 'flip'] for CIFAR",
    )
    crop_padding: PositiveInt = Field(4, description="pixels of padding of 'crop', per side")
    crop_padding_mode: Literal["zeros", "reflect"] = Field(
        "zeros",
        description="what 'crop' pads with: 'zeros' (0 = the mean colour after per-channel "
        "normalisation) or 'reflect' (the mirrored border)",
    )

    @field_validator("validation")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"must be in [0, 1), got {value}")
        return value

    @field_validator("select")
    @classmethod
    def _needs_validation(cls, value: str, info: ValidationInfo) -> str:
        if value == "best_val" and not info.data.get("validation"):
            raise ValueError(
                "got 'best_val', which needs a validation split: set data.validation, e.g. 0.1"
            )
        return value

    @field_validator("augment")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists an augmentation twice, got {value}")
        return value

    @model_serializer(mode="wrap")
    def _without_new_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped = handler(self)
        for key in _DATA_KEYS_ADDED_LATER:
            if key in dumped and dumped[key] == _DATA_DEFAULTS[key]:
                del dumped[key]
        return dumped


_DATA_KEYS_ADDED_LATER = ("validation", "select", "augment", "crop_padding", "crop_padding_mode")
_DATA_DEFAULTS: dict[str, Any] = {
    "validation": 0.0,
    "select": "last",
    "augment": [],
    "crop_padding": 4,
    "crop_padding_mode": "zeros",
}


class MeasureOptions(_Section):
    """``[measure]``: what is measured after training."""

    latency: bool = Field(True, description="measure inference latency")
    latency_repeats: PositiveInt = Field(30, description="timed repetitions per latency")
    latency_warmup: NonNegativeInt = Field(5, description="untimed repetitions first")
    latency_batch_size: PositiveInt = Field(
        128,
        description="batch size of the batched latency (besides batch 1): one value for "
        "every job of a study, whatever their optimizers' batch sizes",
    )
    flops: bool = Field(True, description="count forward FLOPs")
    activation_stats: bool = Field(True, description="record activation statistics")
    eval_batch_size: PositiveInt = Field(1000, description="batch size of evaluation")


Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)


class ComputeOptions(_Section):
    """``[compute]``: the arithmetic a job trains and evaluates in.

    Added after the first release: ``precision`` is left out of the resolved
    configuration while it is ``"fp32"``, and the section itself while it is then empty
    (:data:`LATER_SECTIONS`), so the ids of existing jobs do not change.
    """

    precision: Precision = Field(
        "fp32",
        description="training and evaluation arithmetic: 'fp32', or autocast to 'bf16' or "
        "'fp16' (parameters, optimizer state and the loss stay float32; fp16 adds a loss "
        "scaler). Latency is measured in float32 either way",
    )

    @model_serializer(mode="wrap")
    def _without_default(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped = handler(self)
        if dumped.get("precision") == "fp32":
            del dumped["precision"]
        return dumped


def job_precision(config: dict[str, Any]) -> str:
    """The ``[compute] precision`` of a resolved job configuration (``"fp32"`` if unset)."""
    return str((config.get("compute") or {}).get("precision", "fp32"))


HARNESS_SECTIONS: dict[str, type[BaseModel]] = {
    "data": DataOptions,
    "compute": ComputeOptions,
    "measure": MeasureOptions,
}
#: Harness sections added after the first release: left out of a job's configuration
#: when they resolve to nothing but defaults (an empty table), keeping existing job ids.
LATER_SECTIONS = frozenset({"compute"})


class RunOptions(_Section):
    """``[run]``: how the study runs. Not part of any job's configuration, so changing it
    never changes a job id."""

    timeout_minutes: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="stop a job running longer than this and store it as failed "
        "(`bench run --timeout` overrides it)",
    )
    group_seeds: bool = Field(
        True,
        description="train jobs that differ only in seed, learning rate and schedule, "
        "weight decay, momentum or a transform's setting (same shapes) as one fused model "
        "where a short measured probe says it is faster; each job still gets its own "
        "initialisation, batches, curves and row (`bench run --no-group` turns it off)",
    )


class ResourceOptions(_Section):
    """``[resources]``: what each job asks a cluster scheduler for (``bench run --executor
    ray``). Like ``[run]``, not part of any job's configuration."""

    cpus_per_job: float = Field(
        1.0, gt=0, allow_inf_nan=False, description="CPU cores each job reserves (and its threads)"
    )
    gpus_per_job: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="GPUs each job reserves; a fraction (0.25) packs several jobs on one GPU",
    )
    jobs_per_device: PositiveInt | Literal["auto"] = Field(
        1,
        description="local executor: jobs run at once per device (a worker each, CPU threads "
        "split between them); auto: as many as fit in a GPU's free memory, 1 on the CPU",
    )


class Claim(_Section):
    """A published number to compare against: ``[[claims]]``."""

    match: dict[str, Any] = Field(
        default_factory=dict, description="key path → value: the jobs the claim is about"
    )
    metric: str = Field(description="a result metric, e.g. test_accuracy")
    value: float = Field(description="the published value")
    se: NonNegativeFloat | None = Field(None, description="its standard error, if known")
    source: str | None = Field(None, description="where it was published")
