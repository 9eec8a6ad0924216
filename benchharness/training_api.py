"""The public plugin API for training schemes: :class:`Optimizer`, the base class a scheme
subclasses, and :class:`TrainContext`, everything it gets from the harness besides the
model (data, batches, evaluation, logging, reference training, wrapping another scheme).

The other plugin kinds are in :mod:`benchharness.api`; both are re-exported by
:mod:`benchharness`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from benchharness.api import Compressed, Compressor, Data, Plugin, build_plugin

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from benchharness.augment import Augmentation
    from benchharness.wrapping import Wrapping

__all__ = ["Evaluation", "Optimizer", "TrainContext"]


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
    #: Set on the context :meth:`train_with` hands to a wrapped base optimizer.
    wrapping: Wrapping | None = None
    # -- [data] validation, select and augment (issue 8, data part) ------------------
    #: ``[data] select``: ``"best_val"`` makes :func:`benchharness.training.train_epochs`
    #: return the weights of the epoch with the best :meth:`validate` accuracy; ``"last"``
    #: keeps the last epoch's.
    select: str = "last"
    #: ``[data] augment``: what :meth:`batches` applies to each training batch, or None.
    augmentation: Augmentation | None = None

    def validate(self, model: nn.Module) -> Evaluation | None:
        """Loss and accuracy of ``model`` on the validation split (``[data] validation``,
        held out of ``data.train_x`` before training; never the test split), or ``None``
        when the job has none. Restores train mode."""
        return None

    # -- end of the [data] part -----------------------------------------------------
    #: ``[compute] precision``: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
    #: :func:`benchharness.training.train_epochs` runs each forward pass under that
    #: autocast (fp16 with a loss scaler) and :meth:`evaluate` evaluates under it; a scheme
    #: with its own loop wraps each step's forward pass in
    #: ``benchharness.grouped.precision.autocast(ctx.precision, ctx.device)`` (never the
    #: whole training: autocast reuses its casts of the weights until its outermost
    #: context exits) and, for fp16, steps through ``grad_scaler(ctx.precision, ctx.device)``.
    precision: str = "fp32"

    def batches(
        self, batch_size: int, *, shuffle: bool = True, augment: bool = True
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over the training set in minibatches, indexed on the device.

        With ``augment`` (the default) each batch gets the job's ``[data] augment``
        (random crops, flips) on the device, drawn from :attr:`generator`; pass
        ``augment=False`` for a pass that needs the stored samples.
        """
        import torch

        n = self.data.train_x.shape[0]
        held_on = self.data.train_x.device  # the job's device, unless the data did not fit
        if shuffle:
            order = torch.randperm(n, generator=self.generator).to(held_on)
        else:
            order = torch.arange(n, device=held_on)
        augmentation = self.augmentation if augment else None
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            x, y = self.data.train_x[idx], self.data.train_y[idx]
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            yield (augmentation(x, self.generator) if augmentation else x), y

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

    def build_optimizer(
        self,
        cls: type[torch.optim.Optimizer],
        model: nn.Module,
        *,
        weight_decay: float = 0.0,
        **kwargs: Any,
    ) -> torch.optim.Optimizer:
        """The torch optimizer ``cls(params, weight_decay=..., **kwargs)`` a scheme trains
        ``model`` with. Build it here rather than from ``model.parameters()`` so that a
        wrapping scheme (:meth:`train_with`) can choose the parameter groups and hook the
        steps; without one it is ``cls`` over all parameters. A scheme that builds all its
        torch optimizers this way sets ``Optimizer.wrappable = True``.
        """
        from benchharness.wrapping import build_torch_optimizer

        return build_torch_optimizer(self.wrapping, cls, model, weight_decay, kwargs)

    def train_with(
        self,
        model: nn.Module,
        optimizer: Optimizer | Mapping[str, Any],
        *,
        wrapping: Wrapping | None = None,
    ) -> nn.Module:
        """Train ``model`` with another optimizer plugin in this job, and return it.

        ``optimizer`` is a plugin (best built at validation time from a spec table with
        :func:`build_plugin`, so a bad table is a ``bench validate`` error) or the table
        itself (``{"name": "sgd", "lr": 0.1, ...}``). It trains on this context's data,
        generator, curves and device, as if it were the job's own optimizer. With a
        :class:`~benchharness.wrapping.Wrapping`, its torch optimizers get the wrapping's
        parameter groups and step hooks; that needs a ``wrappable`` plugin and is a
        :class:`~benchharness.errors.BenchError` otherwise, as is a wrapping inside one.
        """
        from benchharness.errors import BenchError

        plugin = optimizer if isinstance(optimizer, Optimizer) else self._optimizer(optimizer)
        if wrapping is not None:
            if not plugin.wrappable:
                raise BenchError(
                    f"optimizer {plugin.name} cannot be wrapped: it does not build its torch "
                    "optimizers with ctx.build_optimizer (Optimizer.wrappable is False)"
                )
            if self.wrapping is not None:
                raise BenchError(
                    f"optimizer {plugin.name}: a wrapping scheme inside another one is not "
                    "supported"
                )
        sub = copy.copy(self)
        sub.wrapping = wrapping
        return plugin.train(model, sub)

    def report(self, plugin: Plugin, **values: float) -> None:
        """Metrics of this training, stored with the job as ``<plugin name>.<key>`` (in
        ``extra``; ``bench report --objectives compander.overhead:min``)."""
        from benchharness.errors import BenchError

        reported = self.__dict__.setdefault("reported", {})
        for key, value in values.items():
            if not math.isfinite(float(value)):
                raise BenchError(f"{plugin.name}: metric {key} is not finite ({value})")
            reported[f"{plugin.name}.{key}"] = float(value)

    def _optimizer(self, table: Mapping[str, Any]) -> Optimizer:
        plugin = build_plugin("optimizer", table)
        assert isinstance(plugin, Optimizer)
        return plugin


class Optimizer(Plugin, ABC):
    """A training scheme: plain SGD, LC, a reparameterisation... ."""

    kind: ClassVar[str] = "optimizer"
    #: True for schemes that compress during training (they use ``ctx.compressors`` and
    #: call ``ctx.set_compressed``): their trained model depends on the compressors, so
    #: the harness never shares it between jobs with different compressors.
    uses_compressors: ClassVar[bool] = False
    #: True for schemes that build every torch optimizer with ``ctx.build_optimizer``,
    #: so that a wrapping scheme (``ctx.train_with(..., wrapping=...)``) can run them.
    wrappable: ClassVar[bool] = False

    @abstractmethod
    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        """Train ``model`` on ``ctx.data`` and return the model to evaluate.

        Report each epoch with ``ctx.log``. Raise :class:`benchharness.errors.Diverged`
        when the loss is no longer finite.
        """
