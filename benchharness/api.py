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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

__all__ = [
    "Compressed",
    "Compressor",
    "CompressorOptions",
    "Data",
    "Dataset",
    "Evaluation",
    "Model",
    "Optimizer",
    "Plugin",
    "PluginOptions",
    "TrainContext",
    "Transform",
]


class PluginOptions(BaseModel):
    """Base for every plugin's parameters: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


# ---------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class Data:
    """A classification dataset held as tensors.

    ``*_x`` are float tensors ``(N, *input_shape)``; ``*_y`` are int64 class labels.
    ``input_values`` is how many numbers one sample needs once stored (a transform that
    keeps k of 784 DCT coefficients sets it to k); ``None`` means every element.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    input_values: int | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def stored_input_values(self) -> int:
        if self.input_values is not None:
            return self.input_values
        return math.prod(self.input_shape)

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
        """Return transformed data; set ``input_values`` if fewer numbers are stored."""


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

    ``realised`` says whether the saving exists in an exported model (values removed or
    coded) or is only simulated (e.g. a mask over dense storage).
    """

    realised: bool = True

    @abstractmethod
    def decompress(self) -> dict[str, Tensor]:
        """Δ(Θ): dense tensors with the original names and shapes."""

    @abstractmethod
    def bits(self) -> int:
        """Exact storage of Θ in bits."""

    def effective_macs(self, name: str, dense_macs: int) -> int:
        """Multiply-accumulates of the layer owning weight ``name`` once compressed.

        Defaults to ``dense_macs``; pruning returns fewer, low-rank the two factors' cost.
        """
        return dense_macs


class CompressorOptions(PluginOptions):
    """Options every compressor has."""

    layers: list[str] = Field(
        default_factory=lambda: ["*"],
        description="glob patterns over module names (e.g. 'fc*'); the weights of "
        "matching Linear/Conv layers are compressed, biases stay 32-bit",
    )


class Compressor(Plugin, ABC):
    """A projection Π: weights → Θ with decompression Δ(Θ) (see :class:`Compressed`).

    Usable after training (the harness loads Δ(Θ) into the model) and inside a training
    scheme (e.g. as the C step of the LC algorithm).
    """

    kind: ClassVar[str] = "compressor"
    Options: ClassVar[type[PluginOptions]] = CompressorOptions

    def select(self, model: nn.Module) -> dict[str, Tensor]:
        """The weights this compressor applies to: ``{param_name: tensor}``.

        Default: the ``weight`` of every ``nn.Linear`` / ``nn.Conv*d`` whose module name
        matches one of ``options.layers``.
        """
        patterns = getattr(self.options, "layers", ["*"])
        chosen: dict[str, Tensor] = {}
        for module_name, module in model.named_modules():
            if not isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
                continue
            if any(fnmatch.fnmatchcase(module_name, p) for p in patterns):
                chosen[f"{module_name}.weight" if module_name else "weight"] = module.weight
        return chosen

    @abstractmethod
    def compress(self, weights: Mapping[str, Tensor]) -> Compressed:
        """Π: the best compressed form of ``weights`` (in the ℓ2 sense where defined)."""

    def with_mu(self, mu: float) -> Compressor:
        """This compressor for LC penalty μ (a copy when Π depends on μ, e.g. rank
        selection); the LC scheme calls it before each C step. Default: ``self``."""
        return self


# ------------------------------------------------------------------------ training
@dataclasses.dataclass(frozen=True)
class Evaluation:
    loss: float
    accuracy: float


class TrainContext(ABC):
    """What a training scheme gets from the harness besides the model.

    ``data`` is on ``device`` when it fits there (else in CPU memory; ``batches`` moves
    each batch to ``device``); ``generator`` is seeded from the job's seed (and
    so are torch's global RNGs before the model is built). ``compressors`` are the
    spec's compressors: a scheme that uses them itself (LC, iDC...) reports the result
    with :meth:`set_compressed`, and the harness then does not compress again.
    """

    data: Data
    device: torch.device
    seed: int
    generator: torch.Generator
    compressors: list[Compressor]

    def batches(self, batch_size: int, *, shuffle: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over the training set in minibatches, indexed on the device."""
        n = self.data.train_x.shape[0]
        held_on = self.data.train_x.device  # the job's device, unless the data did not fit
        if shuffle:
            order = torch.randperm(n, generator=self.generator).to(held_on)
        else:
            order = torch.arange(n, device=held_on)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x, y = self.data.train_x[idx], self.data.train_y[idx]
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    @abstractmethod
    def evaluate(self, model: nn.Module) -> Evaluation:
        """Test loss and accuracy (fraction in [0, 1]) of ``model``; restores train mode."""

    @abstractmethod
    def log(
        self, step: int, total: int | None = None, *, phase: str = "train", **values: float
    ) -> None:
        """Record one point of a curve (e.g. an epoch) and advance the progress display.

        ``step`` counts from 1; ``total`` is the number of steps of this phase, for the ETA.
        """

    @abstractmethod
    def set_compressed(self, compressed: list[Compressed]) -> None:
        """Tell the harness the returned model is Δ(Θ) of these compressed parts."""

    @abstractmethod
    def train_reference(self, model: nn.Module, optimizer: Mapping[str, Any]) -> nn.Module:
        """Train ``model`` with another optimizer plugin and return it: the reference.

        ``optimizer`` is a spec table such as ``{"name": "sgd", "epochs": 30}``. The result
        is cached by (dataset, data, transforms, model, seed, optimizer table), so every
        job of a study that needs the same reference trains it once.
        """


class Optimizer(Plugin, ABC):
    """A training scheme: plain SGD, LC, a reparameterisation... ."""

    kind: ClassVar[str] = "optimizer"

    @abstractmethod
    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        """Train ``model`` on ``ctx.data`` and return the model to evaluate.

        Report each epoch with ``ctx.log``. Raise :class:`benchharness.errors.Diverged`
        when the loss is no longer finite.
        """
