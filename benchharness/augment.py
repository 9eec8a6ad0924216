"""Training-batch augmentation (``[data] augment``): random crops of a padded image and
horizontal flips, done on whole (N, C, H, W) batches on the job's device.

Each batch costs one padding, one gather and one ``torch.where``: no per-sample Python,
no DataLoader workers. The random draws (a crop offset and a flip bit per sample) come
from the job's seeded CPU generator, so a run repeats exactly, and are moved to the
batch's device. Only training batches are augmented; evaluation, validation and
compressors' calibration data never are.

Padding happens on the stored (normalised) tensors: ``zeros`` pads with 0, i.e. the
per-channel mean colour after normalisation (torchvision's ``RandomCrop(32, padding=4)``
on an unnormalised image pads with black instead); ``reflect`` mirrors the border.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from benchharness.errors import BenchError

__all__ = [
    "Augmentation",
    "crop",
    "draw_crop_offsets",
    "draw_flips",
    "flip",
    "from_data_section",
]

PaddingMode = Literal["zeros", "reflect"]


def draw_crop_offsets(n: int, padding: int, generator: torch.Generator) -> Tensor:
    """(n, 2) int64 (row, column) offsets, uniform in [0, 2·padding], on the CPU."""
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator)


def draw_flips(n: int, generator: torch.Generator) -> Tensor:
    """(n,) bool: which samples to flip, each with probability 1/2, on the CPU."""
    return torch.rand(n, generator=generator) < 0.5


def crop(x: Tensor, offsets: Tensor, padding: int, mode: PaddingMode = "zeros") -> Tensor:
    """Sample i of ``x`` padded by ``padding`` on every side, then cut back to H×W at
    ``offsets[i] = (row, column)`` of the padded image (offset (padding, padding) is the
    original image)."""
    n, _c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="constant" if mode == "zeros" else "reflect")
    offsets = offsets.to(x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # (n, h)
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indices around a slice: the indexed dims come first, giving (n, h, w, c).
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def flip(x: Tensor, which: Tensor) -> Tensor:
    """``x`` with the samples where ``which`` is true mirrored left to right."""
    return torch.where(which.to(x.device)[:, None, None, None], x.flip(-1), x)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The configured augmentation; call it on a training batch."""

    crop: bool = False
    flip: bool = False
    padding: int = 4
    padding_mode: PaddingMode = "zeros"

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.ndim != 4:
            raise BenchError(
                f"data.augment needs image batches (N, C, H, W), got shape {tuple(x.shape)}"
            )
        if self.crop:
            if self.padding_mode == "reflect" and self.padding >= min(x.shape[2:]):
                raise BenchError(
                    f"data.crop_padding = {self.padding} is too large to reflect "
                    f"{x.shape[2]}×{x.shape[3]} images; use crop_padding_mode = 'zeros'"
                )
            offsets = draw_crop_offsets(x.shape[0], self.padding, generator)
            x = crop(x, offsets, self.padding, self.padding_mode)
        if self.flip:
            x = flip(x, draw_flips(x.shape[0], generator))
        return x


def from_data_section(section: Mapping[str, Any] | None) -> Augmentation | None:
    """The augmentation a validated ``[data]`` section asks for, or ``None``."""
    section = section or {}
    kinds = set(section.get("augment") or ())
    if not kinds:
        return None
    return Augmentation(
        crop="crop" in kinds,
        flip="flip" in kinds,
        padding=int(section.get("crop_padding", 4)),
        padding_mode=section.get("crop_padding_mode", "zeros"),
    )
