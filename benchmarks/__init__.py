"""asv benchmarks of benchharness's own speed, and the helpers they share.

Everything here runs on synthetic data (no dataset files). The helpers are shared by the
asv modules (``bench_*.py``), by ``compare_baseline.py`` and by ``tests/test_benchmarks.py``.

asv imports this package and looks for ``time_*``/``peakmem_*``/``track_*``/``mem_*``
functions and classes in every module of it, so no helper here may carry such a name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchharness.api import Data
from benchharness.jobcontext import JobContext
from benchharness.matrix import Job
from benchharness.plugins import get_registry
from benchharness.training import train_epochs

# BENCH_TORCH_THREADS=N pins torch's intra-op threads (asv passes the environment on to
# its benchmark processes). On a shared or oversubscribed machine, multi-threaded BLAS and
# LAPACK calls slow down erratically (seconds instead of milliseconds); one thread gives
# far steadier numbers. Unset: torch's default.
if os.environ.get("BENCH_TORCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))

# The training-loop comparison: compressednet (α = 1) on 28×28 one-channel images,
# SGD with the harness's `sgd` defaults, the harness's default batch size.
IMAGE_SHAPE = (1, 28, 28)
NUM_CLASSES = 10
BATCH_SIZE = 128
LR = 0.01
MOMENTUM = 0.9
EVAL_BATCH_SIZE = 1000


def synthetic_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random 28×28 one-channel images (float32) and labels in 0..9.

    Each class has its own mean image, so the problem is learnable (losses fall), though
    nothing here depends on that.
    """
    g = torch.Generator().manual_seed(seed)
    means = torch.randn((NUM_CLASSES, *IMAGE_SHAPE), generator=g)
    y = torch.randint(NUM_CLASSES, (n,), generator=g)
    x = means[y] + torch.randn((n, *IMAGE_SHAPE), generator=g)
    return x, y


def synthetic_data(n_train: int, n_test: int = 1024, seed: int = 0) -> Data:
    """A synthetic MNIST-shaped :class:`~benchharness.api.Data` on the CPU."""
    x, y = synthetic_images(n_train + n_test, seed)
    return Data(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=NUM_CLASSES)


def build_compressednet(seed: int = 0, width: float = 1.0) -> nn.Module:
    """compressednet(α = ``width``) built through the plugin registry, seeded."""
    torch.manual_seed(seed)
    model_plugin = get_registry().create("model", "compressednet", {"width": width})
    return model_plugin.build(IMAGE_SHAPE, NUM_CLASSES)


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def job_context(data: Data, seed: int = 0, cache_dir: Path | None = None) -> JobContext:
    """The harness's own TrainContext (``runner.JobContext``) for a synthetic job."""
    job = Job(
        id="benchmark",
        config_id="benchmark",
        config={},
        axes={},
        seed=seed,
        spec_name="benchmark",
        spec_hash="",
        quick=False,
    )
    return JobContext(
        job,
        data,
        torch.device("cpu"),
        get_registry(),
        [],
        cache_dir or Path(tempfile.gettempdir()),
        lambda _event: None,
        EVAL_BATCH_SIZE,
    )


def harness_epoch(model: nn.Module, ctx: JobContext, optimizer: torch.optim.Optimizer) -> float:
    """One epoch through the harness: ``train_epochs`` over ``ctx.batches``, which also
    evaluates on the test split and logs the epoch. Returns the mean training loss."""
    (loss,) = train_epochs(
        model, ctx, optimizer, epochs=1, batch_size=BATCH_SIZE, lr_for_epoch=lambda _e: LR
    )
    return loss


def plain_epoch(
    model: nn.Module, data: Data, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> float:
    """The same epoch written as a plain PyTorch loop: shuffle, minibatch SGD on the
    cross-entropy, then one pass over the test split — the work ``harness_epoch`` does,
    without the harness. Returns the mean training loss."""
    model.train()
    n = data.train_x.shape[0]
    order = torch.randperm(n, generator=generator)
    loss_sum = 0.0
    for start in range(0, n, BATCH_SIZE):
        idx = order[start : start + BATCH_SIZE]
        x, y = data.train_x[idx], data.train_y[idx]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(y)
    plain_evaluate(model, data)
    return loss_sum / n


def plain_evaluate(model: nn.Module, data: Data) -> tuple[float, float]:
    """One plain ``no_grad`` pass over the test split in batches of ``EVAL_BATCH_SIZE``:
    (mean cross-entropy, accuracy). Leaves the model in train mode."""
    model.eval()
    correct, test_loss = 0, 0.0
    n = data.test_x.shape[0]
    with torch.no_grad():
        for start in range(0, n, EVAL_BATCH_SIZE):
            logits = model(data.test_x[start : start + EVAL_BATCH_SIZE])
            target = data.test_y[start : start + EVAL_BATCH_SIZE]
            test_loss += F.cross_entropy(logits, target, reduction="sum").item()
            correct += int((logits.argmax(1) == target).sum())
    model.train()
    return test_loss / n, correct / n


class EpochPair:
    """A harness epoch and a plain epoch on the same data, each with its own freshly built
    (identically initialised) model and optimizer, so that neither benefits from the
    other's training. ``data`` defaults to synthetic images; ``width`` is compressednet's α."""

    def __init__(
        self,
        n_train: int,
        n_test: int = 1024,
        seed: int = 0,
        *,
        width: float = 1.0,
        data: Data | None = None,
    ):
        self.data = data if data is not None else synthetic_data(n_train, n_test, seed)
        self.harness_model = build_compressednet(seed, width)
        self.harness_optimizer = sgd(self.harness_model)
        self.ctx = job_context(self.data, seed)
        self.plain_model = build_compressednet(seed, width)
        self.plain_optimizer = sgd(self.plain_model)
        self.generator = torch.Generator().manual_seed(seed)

    def harness(self) -> float:
        return harness_epoch(self.harness_model, self.ctx, self.harness_optimizer)

    def plain(self) -> float:
        return plain_epoch(self.plain_model, self.data, self.plain_optimizer, self.generator)
