"""A short measurement deciding whether fusing members is faster on this device."""

from __future__ import annotations

import copy
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchharness.allocator import retain_freed_memory
from benchharness.grouped.chain import chain_of, fusible_reason
from benchharness.grouped.cpu_kernels import cpu_kernels
from benchharness.grouped.fused_net import fuse
from benchharness.grouped.optimizer import FusedSGD
from benchharness.grouped.precision import autocast

__all__ = ["Decision", "clear_decisions", "decide"]


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether to fuse, and the measurement behind it.

    ``ratio`` is the median time of one training step of every member run one after
    another over that of one fused step (> 1: fusing is faster); ``None`` when nothing
    was measured (disabled, not fusible). ``channels_last`` says which fused layout won.
    """

    fuse: bool
    reason: str
    ratio: float | None = None
    sequential_seconds: float | None = None
    fused_seconds: float | None = None
    channels_last: bool = False


_DECISIONS: dict[tuple, Decision] = {}


def clear_decisions() -> None:
    """Forget every cached :func:`decide` result (e.g. after the machine's load changed)."""
    _DECISIONS.clear()


def decide(
    models: Sequence[nn.Module],
    train_x: Tensor,
    train_y: Tensor,
    *,
    batch_size: int,
    precision: str = "fp32",
    enabled: bool = True,
    min_ratio: float = 1.1,
    steps: int = 2,
    repeats: int = 3,
    budget_seconds: float = 10.0,
) -> Decision:
    """Whether training ``models`` fused beats training them one after another here.

    ``enabled=False`` (the user's off switch) returns ``fuse=False`` without measuring;
    so do unfusible models (reason from :func:`fusible_reason`) and a single model.
    Otherwise times, on copies of the models (the originals, their RNG streams and
    torch's global RNG are untouched), ``repeats`` interleaved rounds of ``steps``
    SGD-with-momentum steps on the first ``batch_size`` samples of ``train_x`` (moved
    to the models' device): the members one after another (plain layout, as a single
    job trains), and fused — in the plain and, for convolutional models, the
    channels-last layout. ``fuse`` is true only when the best fused layout's median is at
    least ``min_ratio`` times faster, so the default margin keeps noise from choosing a
    slower path. Rounds stop early, after the first, once ``budget_seconds`` have gone
    into measuring (warm-up included). Results are cached per (architecture, parameter
    shapes, member count, batch size, precision, device, input shape, torch threads,
    ``min_ratio``) for the process; see :func:`clear_decisions`.
    """
    if not enabled:
        return Decision(False, "grouping is turned off")
    if len(models) < 2:
        return Decision(False, "a single model has nothing to fuse with")
    reason = fusible_reason(models)
    if reason is not None:
        return Decision(False, reason)
    device = next(models[0].parameters()).device
    key = (
        type(models[0]).__name__,
        tuple((n, tuple(p.shape)) for n, p in models[0].named_parameters()),
        len(models),
        batch_size,
        precision,
        str(device),
        tuple(train_x.shape[1:]),
        torch.get_num_threads(),
        min_ratio,
    )
    if key not in _DECISIONS:
        _DECISIONS[key] = _measure(
            models,
            train_x,
            train_y,
            batch_size,
            precision,
            min_ratio,
            steps,
            repeats,
            budget_seconds,
        )
    return _DECISIONS[key]


def _measure(models, train_x, train_y, batch_size, precision, min_ratio, steps, repeats, budget):
    retain_freed_memory()  # as train_fused runs, and for both sides alike
    cpu_kernels()  # built on first use (~30 s): not part of the measured budget
    began = time.perf_counter()
    device = next(models[0].parameters()).device
    m = len(models)
    x = train_x[:batch_size].to(device)
    y = train_y[:batch_size].to(device)
    copies = [copy.deepcopy(model).train() for model in models]
    optimizers = [torch.optim.SGD(c.parameters(), lr=1e-3, momentum=0.9) for c in copies]

    def sequential() -> None:
        for model, opt in zip(copies, optimizers, strict=True):
            with autocast(precision, device):
                out = model(x)
            loss = F.cross_entropy(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    xm = x.unsqueeze(0).expand(m, *x.shape)
    ym = y.unsqueeze(0).expand(m, *y.shape).flatten()

    def fused_step(channels_last: bool) -> Callable[[], None]:
        net = fuse(models).use_channels_last(channels_last).train()
        opt = FusedSGD(
            net.parameters(),
            m,
            lr=[1e-3] * m,
            momentum=[0.9] * m,
            weight_decay=[0.0] * m,
            nesterov=[False] * m,
        )

        def step() -> None:
            with autocast(precision, device):
                out = net(xm)
            loss = F.cross_entropy(out.float().flatten(0, 1), ym, reduction="sum") / x.shape[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    layouts = [False, True] if chain_of(models[0])[0].kind == "conv" else [False]
    candidates = {"sequential": sequential}
    candidates.update({f"fused_cl{int(cl)}": fused_step(cl) for cl in layouts})
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for fn in candidates.values():
        fn()  # warm-up: allocator, kernels, oneDNN primitive caches
    for round_ in range(repeats):
        if round_ and time.perf_counter() - began > budget:
            break
        for name, fn in candidates.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            _synchronize(device)
            times[name].append((time.perf_counter() - start) / steps)
    medians = {name: statistics.median(t) for name, t in times.items()}
    best = min((n for n in medians if n != "sequential"), key=medians.__getitem__)
    ratio = medians["sequential"] / medians[best]
    fuse_it = ratio >= min_ratio
    verdict = "faster" if fuse_it else f"not {min_ratio:g}x faster"
    return Decision(
        fuse_it,
        f"fused {verdict}: {ratio:.2f}x the sequential speed",
        ratio,
        medians["sequential"],
        medians[best],
        channels_last=best.endswith("1"),
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
