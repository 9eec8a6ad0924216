"""Training precision: which autocast a ``precision`` name means on a device."""

from __future__ import annotations

import contextlib

import torch

from benchharness.errors import BenchError
from benchharness.spec_sections import PRECISIONS, Precision

__all__ = [
    "PRECISIONS",
    "Precision",
    "autocast",
    "autocast_dtype",
    "backward_and_step",
    "grad_scaler",
]


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of ``precision``: ``None`` for fp32 (no autocast),
    ``torch.bfloat16`` for bf16, ``torch.float16`` for fp16 (on CPU too: torch's CPU
    autocast supports it, though only bf16 has fast kernels on CPUs with AVX-512 BF16).
    Raises :class:`BenchError` for any other name."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    raise BenchError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context to run a forward pass in: ``torch.autocast`` on ``device.type`` with
    :func:`autocast_dtype`, or a no-op for fp32. Parameters, gradients, optimizer state
    and the loss stay float32 either way."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (whose gradients underflow without one), else ``None``."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def backward_and_step(
    objective: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    """Backpropagate ``objective`` and step ``optimizer``, through ``scaler`` if given."""
    if scaler is None:
        objective.backward()
        optimizer.step()
    else:
        scaler.scale(objective).backward()
        scaler.step(optimizer)
        scaler.update()
