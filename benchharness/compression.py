"""What a compressor gets for post-training compression: :class:`CompressionContext`.

Public API. The harness builds one context per compressor of a job and passes it to
:meth:`benchharness.Compressor.compress_model`; a plugin's own tests can build one
directly from a model and training tensors::

    ctx = CompressionContext(model, train_x, train_y, seed=0)
    theta = MyCompressor(MyCompressor.Options(calibration=512)).compress_model(ctx)

Everything data-dependent comes from the *training* split: the harness never shows a
compressor the test set.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchharness.api import Compressed
from benchharness.errors import BenchError

__all__ = ["Batch", "Captured", "CompressionContext", "check_compressed"]

Batch = tuple[Tensor, Tensor]
FineTuner = Callable[[nn.Module, Mapping[str, Any]], nn.Module]
Logger = Callable[..., None]


@dataclasses.dataclass(frozen=True)
class Captured:
    """A layer's input and output on the calibration batches, concatenated along dim 0."""

    inputs: Tensor
    outputs: Tensor


class CompressionContext:
    """The trained model and the data-aware services a compressor may use.

    Attributes:
        model: the trained model, in eval mode on ``device``. Leave it unchanged; copy it
            (``copy.deepcopy``) to try modified weights.
        device: where the model lives; calibration batches are moved there.
        seed: the job's seed.
        generator: a CPU ``torch.Generator`` for the compressor's own random choices,
            seeded from the job's seed and the compressor's table, so two jobs that
            differ only in a compressor option (e.g. its ``seed``) draw differently and
            reruns draw the same.
        layer_macs: dense multiply-accumulates per sample of each Linear/Conv layer,
            keyed by weight name (``"conv1.weight"``).
    """

    def __init__(
        self,
        model: nn.Module,
        train_x: Tensor,
        train_y: Tensor,
        *,
        seed: int = 0,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        layer_macs: Mapping[str, int] | None = None,
        fine_tuner: FineTuner | None = None,
        logger: Logger | None = None,
    ):
        self.model = model
        self.device = torch.device(device) if device is not None else _device_of(model)
        self.seed = seed
        self.generator = generator or torch.Generator().manual_seed(seed)
        self.layer_macs: dict[str, int] = dict(layer_macs or {})
        self.metrics: dict[str, float] = {}
        self._train_x = train_x
        self._train_y = train_y
        self._fine_tuner = fine_tuner
        self._logger = logger
        self._calibration: dict[tuple[int, int], list[Batch]] = {}

    # ---------------------------------------------------------------- data
    @property
    def train_size(self) -> int:
        """Number of training samples calibration batches are drawn from."""
        return int(self._train_x.shape[0])

    def calibration_batches(self, size: int, batch_size: int = 256) -> list[Batch]:
        """``size`` training samples (inputs, labels) in batches of ``batch_size``, on
        ``device``.

        Drawn without replacement from the training split by a generator seeded with the
        job's seed only, so every compressor of a job (and every compressor option)
        sees the same calibration set. ``size`` larger than the split is an error.
        """
        if size < 1 or batch_size < 1:
            raise BenchError(f"calibration size and batch size must be >= 1, got {size}")
        if size > self.train_size:
            raise BenchError(
                f"calibration size {size} exceeds the training split ({self.train_size} samples)"
            )
        key = (size, batch_size)
        if key not in self._calibration:
            order = torch.randperm(
                self.train_size, generator=torch.Generator().manual_seed(self.seed)
            )
            idx = order[:size].to(self._train_x.device)
            x, y = self._train_x[idx], self._train_y[idx]
            self._calibration[key] = [
                (x[i : i + batch_size].to(self.device), y[i : i + batch_size].to(self.device))
                for i in range(0, size, batch_size)
            ]
        return self._calibration[key]

    @torch.no_grad()
    def capture(
        self, model: nn.Module, module_names: Sequence[str], batches: Iterable[Batch]
    ) -> dict[str, Captured]:
        """The input (first positional argument) and output of each named submodule of
        ``model`` on ``batches``, in eval mode, concatenated over the batches.

        ``model`` may be ``ctx.model`` or a modified copy of it: capturing a copy whose
        earlier layers are already compressed gives the inputs those layers produce.
        """
        modules = dict(model.named_modules())
        unknown = [name for name in module_names if name not in modules]
        if unknown:
            raise BenchError(f"capture: no submodule named {unknown[0]!r} in the model")
        seen: dict[str, tuple[list[Tensor], list[Tensor]]] = {n: ([], []) for n in module_names}
        handles = []
        for name in module_names:

            def hook(_m: nn.Module, args: tuple, out: Tensor, _name: str = name) -> None:
                # copies: an in-place op after the module (ReLU(inplace=True)) would
                # otherwise overwrite what was captured
                seen[_name][0].append(args[0].detach().clone())
                seen[_name][1].append(out.detach().clone())

            handles.append(modules[name].register_forward_hook(hook))
        try:
            with _eval_mode(model):
                for x, _y in batches:
                    model(x.to(self.device))
        finally:
            for handle in handles:
                handle.remove()
        return {
            name: Captured(torch.cat(inputs), torch.cat(outputs))
            for name, (inputs, outputs) in seen.items()
        }

    @torch.no_grad()
    def loss(self, model: nn.Module, batches: Iterable[Batch]) -> float:
        """Mean cross-entropy of ``model`` (eval mode) over ``batches``."""
        total, count = 0.0, 0
        with _eval_mode(model):
            for x, y in batches:
                logits = model(x.to(self.device))
                total += float(F.cross_entropy(logits, y.to(self.device), reduction="sum"))
                count += int(y.shape[0])
        if count == 0:
            raise BenchError("loss: no calibration samples")
        return total / count

    # ------------------------------------------------------------- services
    def fine_tune(self, model: nn.Module, optimizer: Mapping[str, Any]) -> nn.Module:
        """Train ``model`` (e.g. the compressed copy, with its structure held by a
        parametrization) with another optimizer plugin given as a spec table, such as
        ``{"name": "sgd", "lr": 1e-3, "epochs": 2}``, on the training split; returns it.
        The curves are stored under the phase ``finetune_<phase>``."""
        if self._fine_tuner is None:
            raise BenchError("fine_tune: this compression context has no trainer")
        return self._fine_tuner(model, optimizer)

    def report(self, **values: float) -> None:
        """Store metrics of this compression (e.g. ``distortion=0.12``): each is saved
        with the job as ``<compressor name>.<key>`` and can be reported like any
        built-in metric (``bench report --objectives greedy_random.distortion:min``)."""
        for key, value in values.items():
            value = float(value)
            if not math.isfinite(value):
                raise BenchError(f"report: metric {key} is not finite ({value})")
            self.metrics[key] = value

    def log(
        self, step: int, total: int | None = None, *, phase: str = "compress", **values: float
    ) -> None:
        """One point of a progress curve (e.g. a layer or an ADMM iteration)."""
        if self._logger is not None:
            self._logger(step, total, phase=phase, **values)


def check_compressed(owner: str, part: Any, selected: Mapping[str, Tensor]) -> Compressed:
    """``part`` if it is a valid Θ for the weights ``selected``, else a one-line
    BenchError naming ``owner`` (the compressor): a :class:`Compressed` whose weight names
    are among ``selected`` with the same shapes, ``bits()`` a non-negative integer and
    ``realised`` stated as a bool."""
    if not isinstance(part, Compressed):
        raise BenchError(f"compressor {owner} returned {type(part).__name__}, not a Compressed")
    if not isinstance(part.realised, bool):
        raise BenchError(
            f"compressor {owner}: {type(part).__name__} does not state `realised` "
            "(True if the saving exists in an exported model, False if simulated)"
        )
    dense = part.decompress()
    for name, value in dense.items():
        if name not in selected:
            raise BenchError(
                f"compressor {owner}: Δ(Θ) has weight {name!r}, which it did not select"
            )
        if tuple(value.shape) != tuple(selected[name].shape):
            raise BenchError(
                f"compressor {owner}: Δ(Θ)[{name!r}] has shape {tuple(value.shape)}, "
                f"the weight has {tuple(selected[name].shape)}"
            )
    bits = part.bits()
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise BenchError(f"compressor {owner}: bits() returned {bits!r}, not an integer")
    if int(bits) < 0:
        raise BenchError(f"compressor {owner}: bits() returned {int(bits)} < 0")
    return part


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


class _eval_mode:
    """Put a model in eval mode for a block and restore its previous mode."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.was_training = self.model.training
        self.model.eval()
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.train(self.was_training)
