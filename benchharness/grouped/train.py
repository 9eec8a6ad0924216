"""The fused training loop: every member sees exactly the batches it would see alone."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from benchharness.allocator import retain_freed_memory
from benchharness.api import Evaluation
from benchharness.errors import BenchError
from benchharness.grouped.fused_net import FusedNet, member_slice
from benchharness.grouped.optimizer import FusedSGD
from benchharness.grouped.precision import autocast, backward_and_step, grad_scaler
from benchharness.metrics import eval_rows

__all__ = ["EpochHook", "MemberRun", "evaluate_members", "member_run", "train_fused"]


@dataclasses.dataclass(frozen=True)
class MemberRun:
    """What one member's training would have used alone.

    ``train_x``/``train_y`` are its training split (members may hold different tensors,
    e.g. differently transformed inputs, of equal shapes); ``generator`` is the job's
    generator (``TrainContext.generator``), consumed exactly as
    ``TrainContext.batches`` consumes it: one ``torch.randperm(n)`` per epoch.
    ``lr_for_epoch`` is its schedule; the rest are its ``torch.optim.SGD`` settings.
    """

    train_x: Tensor
    train_y: Tensor
    generator: torch.Generator
    lr_for_epoch: Callable[[int], float]
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


def member_run(options, train_x: Tensor, train_y: Tensor, generator: torch.Generator) -> MemberRun:
    """The :class:`MemberRun` of a job trained by the ``sgd`` plugin with ``options``
    (its validated ``Options``: ``lr_for_epoch()``, ``momentum``, ``weight_decay``,
    ``nesterov``) on its data, drawing batches from ``generator`` (its context's)."""
    return MemberRun(
        train_x,
        train_y,
        generator,
        options.lr_for_epoch(),
        momentum=float(options.momentum),
        weight_decay=float(options.weight_decay),
        nesterov=bool(options.nesterov),
    )


#: ``hook(epoch, losses, lrs)`` after each epoch (from 0): every member's mean training
#: loss and learning rate of that epoch (a diverged member's loss is not finite).
EpochHook = Callable[[int, list[float], list[float]], None]


def train_fused(
    fused: FusedNet,
    members: Sequence[MemberRun],
    *,
    epochs: int,
    batch_size: int,
    precision: str = "fp32",
    on_epoch: EpochHook | None = None,
) -> tuple[list[list[float]], list[str | None]]:
    """Train every member of ``fused`` in place, as ``train_epochs`` with
    ``torch.optim.SGD`` would train each alone; returns ``(losses, diverged)``.

    Member ``i`` gets, each epoch ``e``, learning rate ``members[i].lr_for_epoch(e)``
    and the minibatches of ``TrainContext.batches(batch_size)`` drawn from its own
    generator and data, and minimises their mean cross-entropy; one fused step updates
    all members (:class:`FusedSGD`). Forward passes run under ``precision``'s autocast
    (fp16 with a loss scaler shared by the members: an overflow in one skips that step
    for all, unlike separate runs). ``losses[i][e]`` is member ``i``'s sample-weighted
    mean training cross-entropy of epoch ``e``. ``diverged[i]`` is ``None``, or the
    one-line reason (as :class:`~benchharness.errors.Diverged` would say it) once its
    epoch loss is not finite; from then on that member is frozen at zeros and its loss
    list stops, and the others train on unaffected. Batches are gathered on the
    training tensors' device and moved to the fused model's device. Sets the process's
    allocator to keep freed memory (:func:`~benchharness.allocator.retain_freed_memory`).
    """
    retain_freed_memory()
    m = fused.members
    if len(members) != m:
        raise BenchError(f"grouped: {len(members)} member runs for {m} fused members")
    n = members[0].train_x.shape[0]
    if any(r.train_x.shape != members[0].train_x.shape for r in members):
        raise BenchError("grouped: members' training inputs differ in shape")
    if n == 0:
        raise BenchError("train: the training set is empty")
    device = next(fused.parameters()).device
    same_data = all(r.train_x is members[0].train_x for r in members)
    optimizer = FusedSGD(
        fused.parameters(),
        m,
        lr=[r.lr_for_epoch(0) for r in members],
        momentum=[r.momentum for r in members],
        weight_decay=[r.weight_decay for r in members],
        nesterov=[r.nesterov for r in members],
    )
    scaler = grad_scaler(precision, device)
    alive = torch.ones(m, dtype=torch.bool, device=device)
    losses: list[list[float]] = [[] for _ in range(m)]
    diverged: list[str | None] = [None] * m
    fused.train()
    for epoch in range(epochs):
        lrs = [
            float(r.lr_for_epoch(epoch)) if diverged[i] is None else 0.0
            for i, r in enumerate(members)
        ]
        optimizer.set_lrs(lrs)
        orders = [torch.randperm(n, generator=r.generator).to(r.train_x.device) for r in members]
        loss_sum = torch.zeros(m, device=device)
        for start in range(0, n, batch_size):
            idx = [order[start : start + batch_size] for order in orders]
            x, y = _gather(members, idx, same_data, device)
            with autocast(precision, device):
                out = fused(x)
            per_sample = F.cross_entropy(out.float().flatten(0, 1), y.flatten(), reduction="none")
            per_member = per_sample.view(m, -1).sum(1)
            objective = torch.where(alive, per_member, 0.0).sum() / y.shape[1]
            optimizer.zero_grad(set_to_none=True)
            backward_and_step(objective, optimizer, scaler)
            loss_sum += per_member.detach()
        means = (loss_sum / n).tolist()
        for i, mean in enumerate(means):
            if diverged[i] is not None:
                continue
            losses[i].append(mean)
            if not math.isfinite(mean):
                diverged[i] = (
                    f"train: training loss is not finite (loss {mean}) in epoch {epoch + 1} "
                    f"at lr {lrs[i]:g}; try a smaller learning rate"
                )
                _freeze(fused, optimizer, i, alive)
        if on_epoch is not None:
            on_epoch(epoch, means, lrs)
    return losses, diverged


def _gather(
    members: Sequence[MemberRun], idx: list[Tensor], same_data: bool, device: torch.device
) -> tuple[Tensor, Tensor]:
    if same_data:
        stacked = torch.stack(idx)
        x, y = members[0].train_x[stacked], members[0].train_y[stacked]
    else:
        x = torch.stack([r.train_x[i] for r, i in zip(members, idx, strict=True)])
        y = torch.stack([r.train_y[i] for r, i in zip(members, idx, strict=True)])
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


@torch.no_grad()
def _freeze(fused: FusedNet, optimizer: FusedSGD, index: int, alive: Tensor) -> None:
    """Zero member ``index`` (finite values keep its NaNs out of shared reductions such
    as the loss scaler's overflow check) and stop it from learning."""
    alive[index] = False
    for key, how in fused.origin.values():
        param = fused.stacked[key]
        member_slice(param, index, fused.members, how).zero_()
        buf = optimizer.state.get(param, {}).get("momentum_buffer")
        if buf is not None:
            member_slice(buf, index, fused.members, how).zero_()


@torch.no_grad()
def evaluate_members(
    fused: FusedNet,
    test_x: Tensor | Sequence[Tensor],
    test_y: Tensor | Sequence[Tensor],
    batch_size: int,
    precision: str = "fp32",
) -> list[Evaluation]:
    """Every member's mean test cross-entropy and accuracy, as ``metrics.evaluate``
    computes them for that member alone, in one fused pass per batch.

    ``test_x``/``test_y`` are one test split for all members or one per member (equal
    shapes). The fused model's train/eval mode is restored.
    """
    m = fused.members
    xs = list(test_x) if isinstance(test_x, Sequence) else [test_x] * m
    ys = list(test_y) if isinstance(test_y, Sequence) else [test_y] * m
    device = next(fused.parameters()).device
    was_training = fused.training
    fused.eval()
    loss_sum = torch.zeros(m, device=device, dtype=torch.float64)
    correct = torch.zeros(m, device=device, dtype=torch.int64)
    n = xs[0].shape[0]
    batch_size = eval_rows(batch_size, device)  # each member's slices as it gets alone
    for start in range(0, n, batch_size):
        if all(x is xs[0] for x in xs):
            batch = xs[0][start : start + batch_size].to(device)
            x = batch.unsqueeze(0).expand(m, *batch.shape)
        else:
            x = torch.stack([t[start : start + batch_size] for t in xs]).to(device)
        y = torch.stack([t[start : start + batch_size] for t in ys]).to(device)
        with autocast(precision, device):
            out = fused(x)
        out = out.float()
        ce = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(m, -1)
        loss_sum += ce.double().sum(1)
        correct += (out.argmax(2) == y).sum(1)
    fused.train(was_training)
    return [
        Evaluation(loss=float(s) / n, accuracy=int(c) / n)
        for s, c in zip(loss_sum.tolist(), correct.tolist(), strict=True)
    ]
