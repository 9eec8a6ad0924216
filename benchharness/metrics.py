"""Measurements of a model: each a small function of (model, inputs)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from benchharness.api import Compressed
from benchharness.training_api import Evaluation

DENSE_BITS_PER_VALUE = 32

# Samples per forward pass of an evaluation on the CPU. Larger batches ran up to 1.9×
# slower per sample (compressednet on MNIST, batch 1000 against 128 or 256, one thread):
# their activations no longer fit the CPU caches. A sample's outputs do not depend on
# its batch, so a larger ``batch_size`` is evaluated in slices of this size.
CPU_EVAL_ROWS = 256


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def eval_rows(batch_size: int, device: torch.device) -> int:
    """Samples per forward pass of an evaluation asked to run in batches of
    ``batch_size``: at most :data:`CPU_EVAL_ROWS` on the CPU."""
    return min(batch_size, CPU_EVAL_ROWS) if device.type == "cpu" else batch_size


@torch.no_grad()
def evaluate(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int, device: torch.device | None = None
) -> Evaluation:
    """Mean cross-entropy and accuracy over (x, y), batch by batch on ``device`` (default:
    where ``x`` is); the model's train/eval mode is restored. On the CPU, batches larger
    than :data:`CPU_EVAL_ROWS` samples are run in slices of that size (faster, same
    outputs)."""
    device = torch.device(device or x.device)
    batch_size = eval_rows(batch_size, device)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    for start in range(0, x.shape[0], batch_size):
        logits = model(x[start : start + batch_size].to(device, non_blocking=True))
        target = y[start : start + batch_size].to(device, non_blocking=True)
        loss_sum += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(dim=1) == target).sum()
    model.train(was_training)
    n = x.shape[0]
    return Evaluation(loss=float(loss_sum) / n, accuracy=int(correct) / n)


def layer_flops(
    model: nn.Module, input_shape: tuple[int, ...], device: torch.device
) -> tuple[int, dict[str, int]]:
    """Forward FLOPs for one sample, in total and per module name (torch's FLOP counter).

    torch counts a multiply-accumulate as 2 FLOPs and ignores biases and activations.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((1, *input_shape), device=device))
    model.train(was_training)
    root = type(model).__name__
    per_module: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key.startswith(root + "."):
            per_module[key[len(root) + 1 :]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per_module


def effective_flops(
    total: int, per_module: dict[str, int], compressed: Iterable[Compressed]
) -> int:
    """Forward FLOPs once compressed: each compressed weight's layer counts as its
    compressed form says (``Compressed.effective_macs``)."""
    flops = total
    for part in compressed:
        for weight_name in part.decompress():
            module_name = weight_name.rsplit(".", 1)[0] if "." in weight_name else ""
            dense = per_module.get(module_name)
            if dense is None:
                continue
            flops -= dense - 2 * int(part.effective_macs(weight_name, dense // 2))
    return flops


def size_bits(model: nn.Module, compressed: Iterable[Compressed]) -> tuple[int, int]:
    """(dense bits, compressed bits): every value 32-bit except the compressed tensors,
    which cost what their ``Compressed.bits()`` says."""
    params = dict(model.named_parameters())
    dense = DENSE_BITS_PER_VALUE * sum(p.numel() for p in params.values())
    covered = 0
    bits = 0
    for part in compressed:
        bits += int(part.bits())
        covered += sum(params[name].numel() for name in part.decompress() if name in params)
    total_values = sum(p.numel() for p in params.values())
    return dense, bits + DENSE_BITS_PER_VALUE * (total_values - covered)


@torch.inference_mode()
def latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int,
    device: torch.device,
    *,
    repeats: int,
    warmup: int,
) -> tuple[float, float]:
    """(median, p90) wall time of one forward pass in milliseconds, after ``warmup`` passes."""
    was_training = model.training
    model.eval()
    x = torch.randn((batch_size, *input_shape), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        sync()
        samples.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return statistics.median(samples), _percentile(samples, 0.9)


def _percentile(samples: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default)."""
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@torch.no_grad()
def activation_stats(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Mean and std of every leaf module's output on ``x``: ``{"act.<module>.mean": ...}``."""
    stats: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):

            def hook(_m: nn.Module, _inp: object, out: object, _name: str = name) -> None:
                if isinstance(out, Tensor) and out.is_floating_point():
                    stats[f"act.{_name}.mean"] = float(out.mean())
                    stats[f"act.{_name}.std"] = float(out.std()) if out.numel() > 1 else 0.0

            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return stats
