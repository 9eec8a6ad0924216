"""The public plugin API: the base classes a plugin author subclasses.

Every plugin class has

* ``name`` — the string a spec uses to select it (``[model] name = "lenet5"``);
* ``Options`` — a :class:`PluginOptions` (pydantic, ``extra="forbid"``) subclass whose
  fields, each with a ``description``, are the plugin's parameters. The spec table is
  validated against it, and ``bench plugins`` prints it;
* ``version`` — stored with every result for provenance;
* a docstring, whose first line ``bench plugins`` shows.

The harness creates one instance per job with the validated options (``self.options``)
and calls the kind's method below. Plugins never touch the database, the device queue or
the command line: everything they need comes in as arguments.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from benchharness.compression import CompressionContext

__all__ = [
    "Compressed",
    "Compressor",
    "CompressorOptions",
    "Data",
    "Dataset",
    "Model",
    "Plugin",
    "PluginOptions",
    "Transform",
    "build_plugin",
]


class PluginOptions(BaseModel):
    """Base for every plugin's parameters: unknown keys are errors, values are frozen, and
    a float field rejects inf and nan unless it says ``Field(allow_inf_nan=True)``."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Plugin:
    """Common base of the five plugin kinds."""

    kind: ClassVar[str] = "plugin"
    name: ClassVar[str]
    version: ClassVar[str] = "0"
    Options: ClassVar[type[PluginOptions]] = PluginOptions

    def __init__(self, options: PluginOptions | None = None):
        self.options = options if options is not None else self.Options()

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def build_plugin(kind: str, table: Mapping[str, Any], info: ValidationInfo | None = None) -> Plugin:
    """A plugin built from a spec table nested in another plugin's options, such as the
    parts of ``additive`` or the base optimizer of a wrapping scheme.

    Call it from a pydantic validator of your ``Options`` and pass the validator's
    ``info``: the harness validates with its registry in ``info.context["registry"]``,
    which also holds plugins registered in-process. Without one (options built by hand)
    the default registry is used: the built-ins and every installed package's plugins.
    Errors are :class:`benchharness.errors.BenchError` with one line.
    """
    from benchharness.plugins import get_registry

    context = (info.context if info is not None else None) or {}
    registry = context.get("registry") or get_registry()
    return registry.from_table(kind, table)


# ---------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class Data:
    """A classification dataset held as tensors.

    ``*_x`` are float tensors ``(N, *input_shape)``; ``*_y`` are int64 class labels.
    ``input_values`` is how many numbers (values only) one sample needs once stored (a
    transform that keeps k of 784 DCT coefficients sets it to k); ``None`` means every
    element. ``input_bits`` is the exact storage of one sample in bits, everything a
    decoder needs included (e.g. which coefficients were kept); ``None`` means
    ``input_values`` 32-bit floats. The harness's ``input_ratio`` is the raw data's
    :attr:`stored_input_bits` over the transformed data's, so a transform (or dataset)
    that sets one of the two sets both.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    input_values: int | None = None
    input_bits: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def stored_input_values(self) -> int:
        if self.input_values is not None:
            return self.input_values
        return math.prod(self.input_shape)

    @property
    def stored_input_bits(self) -> int:
        """Bits per stored sample: ``input_bits``, else 32 per stored value."""
        if self.input_bits is not None:
            return self.input_bits
        return 32 * self.stored_input_values

    def replace(self, **changes: Any) -> Data:
        return dataclasses.replace(self, **changes)

    def to(self, device: torch.device | str) -> Data:
        return self.replace(
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )


class Dataset(Plugin, ABC):
    """Loads a dataset as in-memory tensors."""

    kind: ClassVar[str] = "dataset"

    @abstractmethod
    def load(self, data_dir: Path) -> Data:
        """Return the full train and test split.

        ``data_dir`` is the harness's data directory (``BENCH_DATA_DIR``). Download into
        it when the files are missing; when that is impossible raise
        :class:`benchharness.errors.BenchError` with one line saying where the files go.
        """


class Transform(Plugin, ABC):
    """An input transform, fitted on the training inputs and applied to both splits.

    It must be deterministic given its options and the data: the harness computes it
    once per (dataset, transform options) and reuses the result across jobs.
    """

    kind: ClassVar[str] = "transform"

    @abstractmethod
    def apply(self, data: Data) -> Data:
        """Return transformed data; set ``input_values`` if fewer numbers are stored per
        sample, and ``input_bits`` if they cost other than 32 bits each (e.g. positions)."""

    def flops(self, input_shape: tuple[int, ...]) -> int | None:
        """FLOPs (2 per multiply-accumulate) to transform one sample of ``input_shape`` at
        inference time, as the deployed pipeline would; stored as ``transform_flops`` and
        added into ``flops_total``. ``None`` (the default) means unknown: the total is then
        left empty rather than understated."""
        return None


# -------------------------------------------------------------------------- models
class Model(Plugin, ABC):
    """Builds an architecture."""

    kind: ClassVar[str] = "model"

    @abstractmethod
    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        """Return a freshly initialised module mapping ``(B, *input_shape)`` to logits."""


# --------------------------------------------------------------------- compressors
class Compressed(ABC):
    """Θ: a compressed form of some named weight tensors.

    Every subclass states ``realised`` (a class or instance attribute): ``True`` when the
    saving exists in an exported model (values removed or coded), ``False`` when it is
    only simulated (e.g. a mask over dense storage). The harness refuses a ``Compressed``
    that leaves it unstated.
    """

    realised: bool | None = None

    @abstractmethod
    def decompress(self) -> dict[str, Tensor]:
        """Δ(Θ): dense tensors with the original names and shapes."""

    @abstractmethod
    def bits(self) -> int:
        """Exact storage of Θ in bits: the compressed weights only (biases and the
        weights no compressor selected are counted by the harness at 32 bits each)."""

    def effective_macs(self, name: str, dense_macs: int) -> int:
        """Multiply-accumulates of the layer owning weight ``name`` once compressed.

        Defaults to ``dense_macs``; pruning returns fewer, low-rank the two factors' cost.
        """
        return dense_macs

    def deploy(self, name: str, module: nn.Module) -> nn.Module | None:
        """The layer owning weight ``name`` as it runs from Θ's stored form, or ``None``.

        ``module`` is that layer (an ``nn.Linear`` / ``nn.Conv*d``) holding Δ(Θ) and its
        bias; return a new module computing the same function from what Θ stores (low
        rank: two factor layers; row pruning: a smaller layer; unstructured pruning: a
        sparse weight), with the same input and output shapes, on ``module``'s device.
        Leave ``module`` unchanged. ``None`` (the default) means Θ has no form that runs
        differently from the dense layer (e.g. quantisation codes): the layer stays dense.
        The harness replaces the layers in a copy of the model and stores that model's
        latency as ``latency_deployed_*``, beside ``latency_*`` of the evaluated dense
        Δ(Θ); the job fails if the copy's outputs differ from the evaluated model's.
        ``benchharness.deploy`` has building blocks (``factored``, ``sparse``,
        ``kept_rows``).
        """
        return None


class CompressorOptions(PluginOptions):
    """Options every compressor has."""

    layers: list[str] = Field(
        default_factory=lambda: ["*"],
        description="glob patterns over module names (e.g. 'fc*'); the weights of "
        "matching Linear/Conv layers are compressed, biases stay 32-bit",
    )


class Compressor(Plugin, ABC):
    """A projection Π: weights → Θ with decompression Δ(Θ) (see :class:`Compressed`).

    Two entry points:

    * :meth:`compress` — data-free: Θ from the weights alone. This is what a training
      scheme calls inside training (the C step of the LC algorithm) and what the
      harness uses after training unless :meth:`compress_model` is overridden.
    * :meth:`compress_model` — post-training compression of a trained model, with a
      :class:`~benchharness.compression.CompressionContext`: calibration batches from
      the training split, layer inputs/outputs, a loss, per-layer MACs, a seeded
      generator, fine-tuning. Data-aware compressors override this and set
      ``data_aware = True``; their :meth:`compress` may stay unimplemented.

    ``layer_macs`` (dense multiply-accumulates per sample of each selectable weight's
    layer, keyed by weight name such as ``"conv1.weight"``) is set by the harness on
    every compressor it builds, before either entry point is called.
    """

    kind: ClassVar[str] = "compressor"
    Options: ClassVar[type[PluginOptions]] = CompressorOptions
    data_aware: ClassVar[bool] = False

    def __init__(self, options: PluginOptions | None = None):
        super().__init__(options)
        self.layer_macs: dict[str, int] = {}

    def select(self, model: nn.Module) -> dict[str, Tensor]:
        """The weights this compressor applies to: ``{param_name: tensor}``.

        Default: the ``weight`` of every ``nn.Linear`` / ``nn.Conv*d`` whose module name
        matches one of ``options.layers``.
        """
        from torch import nn

        patterns = getattr(self.options, "layers", ["*"])
        chosen: dict[str, Tensor] = {}
        for module_name, module in model.named_modules():
            if not isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                continue
            if any(fnmatch.fnmatchcase(module_name, p) for p in patterns):
                chosen[f"{module_name}.weight" if module_name else "weight"] = module.weight
        return chosen

    def compress(self, weights: Mapping[str, Tensor]) -> Compressed:
        """Π: the best compressed form of ``weights`` (in the ℓ2 sense where defined).

        Data-free compressors implement this. A data-aware one that does not gets a
        one-line error when used where only weights are available (an LC C step).
        """
        from benchharness.errors import BenchError

        raise BenchError(
            f"compressor {self.name} is data-aware: it compresses a trained model with "
            "calibration data and cannot be used where only weights are given (e.g. as the "
            "C step of a training scheme or a part of `additive`)"
        )

    def compress_model(self, ctx: CompressionContext) -> Compressed:
        """Θ for the trained ``ctx.model`` (post-training compression).

        Must leave ``ctx.model`` unchanged (work on ``copy.deepcopy(ctx.model)`` when a
        modified network is needed): the harness loads Δ(Θ) into it afterwards. The
        returned Θ must cover only weights of ``self.select(ctx.model)``, with their
        shapes. Default: ``self.compress`` of the selected weights.
        """
        return self.compress({n: w.detach() for n, w in self.select(ctx.model).items()})

    def with_mu(self, mu: float) -> Compressor:
        """This compressor for LC penalty μ (a copy when Π depends on μ, e.g. rank
        selection); the LC scheme calls it before each C step. Default: ``self``."""
        return self


def __getattr__(name: str) -> Any:
    # Optimizer, TrainContext and Evaluation live in benchharness.training_api (kept
    # importable from here for plugins written against the first layout)
    if name in ("Evaluation", "Optimizer", "TrainContext"):
        from benchharness import training_api

        return getattr(training_api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
