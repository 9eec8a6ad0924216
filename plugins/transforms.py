"""Built-in input transforms: identity and per-image 2-D DCT coefficient truncation."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from benchharness import BenchError, Data, PluginOptions, Transform, hookimpl
from benchharness.coding import FLOAT_BITS, index_bits

if TYPE_CHECKING:
    import torch
    from torch import Tensor

# Torch and NumPy are imported only when a transform runs (plugins/_dct_kernels.py):
# listing the plugins must not need them.

# Images per step of the transform: small enough that a chunk's image, coefficients and
# selection temporaries stay in the CPU caches (1024 · 28·28 · 4 B ≈ 3 MiB); 8192 and
# above ran ~1.5–2× slower on 70k MNIST images (benchmarks/dct_transform.py).
_CHUNK = 1024


def dct_matrix(n: int, dtype: torch.dtype | None = None, device=None) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``n × n``): ``D @ x`` is ``dct(x, norm="ortho")``.

    ``D[k, i] = s_k · cos(π (2i + 1) k / 2n)`` with ``s_0 = √(1/n)``, ``s_k = √(2/n)``.
    Built in float64, then cast to ``dtype`` (default float64), so float32 callers get
    correctly rounded entries.
    """
    from benchharness_plugins import _dct_kernels

    return _dct_kernels.dct_matrix(n, dtype, device)


def dct2(x: Tensor) -> Tensor:
    """Orthonormal 2-D DCT-II over the last two dimensions: ``D_H @ x @ D_Wᵀ``."""
    h, w = x.shape[-2:]
    return dct_matrix(h, x.dtype, x.device) @ x @ dct_matrix(w, x.dtype, x.device).T


def idct2(c: Tensor) -> Tensor:
    """Inverse of :func:`dct2`: ``D_Hᵀ @ c @ D_W``."""
    h, w = c.shape[-2:]
    return dct_matrix(h, c.dtype, c.device).T @ c @ dct_matrix(w, c.dtype, c.device)


@lru_cache(maxsize=16)
def _zigzag(h: int, w: int) -> tuple[int, ...]:
    cells = [(r, c) for r in range(h) for c in range(w)]
    # JPEG order: walk the anti-diagonals r + c = s; odd s top-right → bottom-left
    # (row increasing), even s bottom-left → top-right (row decreasing).
    cells.sort(key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else -rc[0]))
    return tuple(r * w + c for r, c in cells)


def zigzag_order(h: int, w: int) -> Tensor:
    """Row-major flat indices of an ``h × w`` grid in JPEG zig-zag order (DC first)."""
    import torch

    return torch.tensor(_zigzag(h, w), dtype=torch.int64)


class Identity(Transform):
    """No transform: the inputs as loaded (the uncompressed reference)."""

    name = "none"
    version = "1"

    class Options(PluginOptions):
        pass

    def apply(self, data: Data) -> Data:
        return data

    def flops(self, input_shape: tuple[int, ...]) -> int:
        return 0


def position_bits(kept: int, total: int) -> int:
    """Bits that say which ``kept`` of ``total`` coefficients an image kept.

    The cheaper of two fixed codings: a list of ``kept`` flat positions of ⌈log2 total⌉
    bits each, or a ``total``-bit mask; 0 when all are kept. The choice depends only on
    ``kept`` and ``total``, which the decoder knows, so it costs no flag bit.
    """
    if kept >= total:
        return 0
    return min(kept * index_bits(total), total)


class DCT(Transform):
    """Keep the k = ⌊ratio·H·W⌋ strongest (or lowest-frequency) 2-D DCT coefficients per image.

    Stored per sample (``input_bits``), for each channel: the k kept coefficients as
    32-bit floats, plus, for ``selection = "magnitude"``, which k they are
    (:func:`position_bits`: min(k·⌈log2 H·W⌉, H·W) bits, a position list or a mask);
    ``lowfreq`` keeps the same zig-zag prefix for every image, so no positions. Both
    ``output`` forms store the same thing: the kept coefficients.

    FLOPs (:meth:`flops`) count the matrix products as computed here; a fast (FFT-based)
    DCT would need fewer.
    """

    name = "dct"
    # 2: chunked products and top-k on the smaller side; outputs differ from 1 by float32
    # rounding, so cached models trained on version 1's data are not reused.
    # 3: magnitude ties at the threshold keep the first in row order (2 left it to
    # torch.topk), so data with such ties may differ from version 2's.
    version = "3"

    class Options(PluginOptions):
        ratio: float = Field(
            0.3,
            description="fraction β of the H·W DCT coefficients kept per image and channel, "
            "in (0, 1]; k = floor(β·H·W)",
        )
        selection: Literal["magnitude", "lowfreq"] = Field(
            "magnitude",
            description="which k coefficients survive: 'magnitude' = the k largest |c| of "
            "each image; 'lowfreq' = the first k in JPEG zig-zag order (same for all images)",
        )
        output: Literal["reconstruction", "coefficients"] = Field(
            "reconstruction",
            description="'reconstruction' = inverse DCT of the kept coefficients (an image); "
            "'coefficients' = the masked H×W coefficient array itself",
        )

        @field_validator("ratio")
        @classmethod
        def _ratio(cls, value: float) -> float:
            if not 0.0 < value <= 1.0:
                raise ValueError(f"must be in (0, 1], got {value}")
            return value

    def kept(self, height: int, width: int) -> int:
        """k: the coefficients kept per image and channel."""
        # The epsilon absorbs float error in products meant to be integers (0.5·784).
        return math.floor(self.options.ratio * height * width + 1e-9)

    def apply(self, data: Data) -> Data:
        if data.train_x.ndim < 3:
            raise BenchError(
                f"dct: needs image inputs (N, C, H, W), got samples of shape {data.input_shape}"
            )
        h, w = data.input_shape[-2:]
        k = self.kept(h, w)
        if k < 1:
            raise BenchError(
                f"dct: ratio {self.options.ratio} keeps no coefficient of a {h}×{w} image"
            )
        channels = math.prod(data.input_shape[:-2])
        return data.replace(
            train_x=self._transform(data.train_x, k),
            test_x=self._transform(data.test_x, k),
            input_values=k * channels,
            input_bits=channels * self.channel_bits(h, w),
        )

    def channel_bits(self, height: int, width: int) -> int:
        """Stored bits of one image channel: k 32-bit values, plus their positions for
        ``magnitude`` selection (:func:`position_bits`)."""
        k = self.kept(height, width)
        positions = position_bits(k, height * width) if self.options.selection == "magnitude" else 0
        return k * FLOAT_BITS + positions

    def flops(self, input_shape: tuple[int, ...]) -> int | None:
        """FLOPs per sample: 2 per multiply-accumulate of the matrix products computed here.

        Forward 2-D DCT ``D_H @ x @ D_Wᵀ``, per channel: H·H·W + H·W·W MACs; for
        ``output = "reconstruction"`` the inverse ``D_Hᵀ @ c @ D_W`` again as many. The
        selection is not counted: top-k (a partial sort) and the zig-zag mask are
        comparisons and elementwise products, which torch's FlopCounterMode does not
        count either. 28×28 with reconstruction: 2 · 2 · (28³ + 28³) = 175,616 FLOPs.
        """
        if len(input_shape) < 2:
            return None
        h, w = input_shape[-2:]
        channels = math.prod(input_shape[:-2])
        macs = channels * (h * h * w + h * w * w)
        if self.options.output == "reconstruction":
            macs *= 2
        return 2 * macs

    def _transform(self, x: Tensor, k: int) -> Tensor:
        from benchharness_plugins import _dct_kernels

        h, w = x.shape[-2:]
        return _dct_kernels.transform(
            x,
            k,
            lowfreq_order=zigzag_order(h, w) if self.options.selection == "lowfreq" else None,
            reconstruct=self.options.output == "reconstruction",
            chunk=_CHUNK,
        )


@hookimpl
def register_transforms(register):
    register(Identity)
    register(DCT)
