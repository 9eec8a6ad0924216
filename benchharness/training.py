"""The shared minibatch training loop and its epoch-wise learning-rate schedules.

Used by the built-in ``sgd`` and ``adam`` optimizers, and by training schemes that train
inside a larger algorithm (the LC algorithm's L step passes its quadratic penalty)::

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_epochs(model, ctx, opt, epochs=20, batch_size=256,
                 lr_for_epoch=lambda e: lr_at(e, lr=0.1, epochs=20, schedule="cosine"),
                 penalty=lambda: mu / 2 * sum((w - t).pow(2).sum() for w, t in pairs),
                 phase="lc", step_offset=done, total=planned)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchharness.errors import BenchError, Diverged
from benchharness.grouped.precision import autocast, backward_and_step, grad_scaler
from benchharness.selection import SELECTION_PHASE, BestEpoch
from benchharness.training_api import TrainContext

Schedule = Literal["constant", "cosine", "step"]

__all__ = ["Schedule", "lr_at", "train_epochs"]


def lr_at(
    epoch: int,
    *,
    lr: float,
    epochs: int,
    schedule: Schedule = "constant",
    lr_min: float = 0.0,
    step_size: int = 1,
    gamma: float = 0.1,
) -> float:
    """The learning rate of epoch ``epoch`` (counted from 0) of a run of ``epochs`` epochs.

    * ``constant``: ``lr``;
    * ``cosine``: ``lr_min + (lr − lr_min)·(1 + cos(π·epoch/epochs))/2`` — starts at ``lr``
      and would reach ``lr_min`` at the end of the last epoch (as
      ``torch.optim.lr_scheduler.CosineAnnealingLR(T_max=epochs)`` stepped once per epoch);
    * ``step``: ``max(lr_min, lr·gamma^⌊epoch/step_size⌋)``.
    """
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        # Written as lr − ... so that epoch 0 gives exactly lr.
        return lr - (lr - lr_min) * (1.0 - math.cos(math.pi * epoch / max(epochs, 1))) / 2.0
    if schedule == "step":
        return max(lr_min, lr * gamma ** (epoch // step_size))
    raise ValueError(f"unknown schedule {schedule!r} (known: constant, cosine, step)")


def train_epochs(
    model: nn.Module,
    ctx: TrainContext,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    batch_size: int,
    lr_for_epoch: Callable[[int], float],
    penalty: Callable[[], Tensor] | None = None,
    phase: str = "train",
    step_offset: int = 0,
    total: int | None = None,
    select: bool | None = None,
) -> list[float]:
    """Train ``model`` in place for ``epochs`` passes over ``ctx.batches(batch_size)``.

    Each epoch ``e`` (counted from 0 within this call):

    1. sets every param group's lr to ``lr_for_epoch(e)``;
    2. minimises, batch by batch, the mean cross-entropy plus ``penalty()`` if given
       (a scalar tensor recomputed every step, e.g. LC's ``μ/2·‖w − w′‖²``);
    3. raises :class:`~benchharness.errors.Diverged` if the epoch's loss is not finite;
    4. evaluates with ``ctx.evaluate`` and reports ``ctx.log(step_offset + e + 1,
       total or epochs, phase=phase, train_loss=..., test_loss=..., test_accuracy=...,
       lr=...)`` (plus ``penalty=`` the epoch's mean penalty when one is given, and
       ``val_loss=``, ``val_accuracy=`` from ``ctx.validate`` when the job has a
       validation split).

    Forward passes run under ``ctx.precision``'s autocast; fp16 scales the loss with a
    ``GradScaler`` (a step whose gradients overflow is skipped, as in torch's AMP).

    Model selection (``[data] select``, read from ``ctx.select``): with ``"best_val"``
    and ``select`` true, the model ends up with the weights and buffers of the epoch of
    this call with the highest validation accuracy, logged as
    ``ctx.log(epoch, phase="selection", val_accuracy=..., val_loss=...)``; with
    ``"last"`` it keeps the last epoch's. ``select`` defaults to ``phase == "train"``:
    a whole training. A scheme that trains inside a larger algorithm (an LC L step) uses
    its own phase and is not selected within. The test split is never used to select.

    ``step_offset`` and ``total`` let a scheme that calls this repeatedly (one call per LC
    step) report one continuous curve. Returns the per-epoch mean training cross-entropy
    (sample-weighted, penalty excluded).
    """
    if select is None:
        select = phase == "train"
    best = BestEpoch() if select and ctx.select == "best_val" else None
    model.train()
    precision = getattr(ctx, "precision", "fp32")  # contexts written before [compute]
    scaler = grad_scaler(precision, ctx.device)
    losses: list[float] = []
    for epoch in range(epochs):
        lr = float(lr_for_epoch(epoch))
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = torch.zeros((), device=ctx.device)
        penalty_sum = torch.zeros((), device=ctx.device)
        seen = 0
        for x, y in ctx.batches(batch_size):
            with autocast(precision, ctx.device):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            objective = loss
            if penalty is not None:
                extra = penalty()
                objective = loss + extra
                penalty_sum += extra.detach() * len(y)
            optimizer.zero_grad(set_to_none=True)
            backward_and_step(objective, optimizer, scaler)
            loss_sum += loss.detach() * len(y)
            seen += len(y)
        if seen == 0:
            raise BenchError(f"{phase}: the training set is empty")
        mean_loss, mean_penalty = (torch.stack([loss_sum, penalty_sum]) / seen).tolist()
        if not (math.isfinite(mean_loss) and math.isfinite(mean_penalty)):
            detail = f"loss {mean_loss}" + (f", penalty {mean_penalty}" if penalty else "")
            raise Diverged(
                f"{phase}: training loss is not finite ({detail}) in epoch "
                f"{step_offset + epoch + 1} at lr {lr:g}; try a smaller learning rate"
            )
        ev = ctx.evaluate(model)
        val = ctx.validate(model)
        extra_values = {"penalty": mean_penalty} if penalty is not None else {}
        if val is not None:
            extra_values.update(val_loss=val.loss, val_accuracy=val.accuracy)
        ctx.log(
            step_offset + epoch + 1,
            total or epochs,
            phase=phase,
            train_loss=mean_loss,
            test_loss=ev.loss,
            test_accuracy=ev.accuracy,
            lr=lr,
            **extra_values,
        )
        losses.append(mean_loss)
        if best is not None:
            if val is None:
                raise BenchError(
                    "data.select = 'best_val' needs a validation split (data.validation > 0)"
                )
            best.observe(model, step_offset + epoch + 1, val)
    if best is not None and best.evaluation is not None:
        chosen = best.restore(model)
        ctx.log(
            chosen,
            phase=SELECTION_PHASE,
            val_accuracy=best.evaluation.accuracy,
            val_loss=best.evaluation.loss,
        )
    return losses
