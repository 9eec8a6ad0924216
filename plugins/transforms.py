"""Built-in input transforms: identity and per-image 2-D DCT coefficient truncation."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import Tensor

from benchharness import BenchError, Data, PluginOptions, Transform, hookimpl
from benchharness.coding import FLOAT_BITS, index_bits

# Images per step of the transform: small enough that a chunk's image, coefficients and
# top-k temporaries stay in the CPU caches (1024 · 28·28 · 4 B ≈ 3 MiB); 8192 and above
# ran ~1.5–2× slower on 70k MNIST images (benchmarks/dct_transform.py).
_CHUNK = 1024


def dct_matrix(n: int, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``n × n``): ``D @ x`` is ``dct(x, norm="ortho")``.

    ``D[k, i] = s_k · cos(π (2i + 1) k / 2n)`` with ``s_0 = √(1/n)``, ``s_k = √(2/n)``.
    Built in float64, then cast, so float32 callers get correctly rounded entries.
    """
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


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
    # rounding, so cached models trained on version 1's data are not reused
    version = "2"

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
        h, w = x.shape[-2:]
        d_h = dct_matrix(h, x.dtype, x.device)
        d_w_t = dct_matrix(w, x.dtype, x.device).T.contiguous()
        low_mask = None
        if self.options.selection == "lowfreq":
            low_mask = torch.zeros(h * w, dtype=x.dtype, device=x.device)
            low_mask[zigzag_order(h, w)[:k].to(x.device)] = 1.0
        reconstruct = self.options.output == "reconstruction"
        out = torch.empty_like(x)
        for chunk, dest in zip(x.split(_CHUNK), out.split(_CHUNK), strict=True):
            # chunk @ D_Wᵀ first: a contiguous batch times a matrix is one flat GEMM.
            coef = (d_h @ (chunk @ d_w_t)).reshape(-1, h * w)
            if k < h * w:
                if low_mask is not None:
                    coef.mul_(low_mask)
                else:
                    _keep_largest(coef, k)
            coef = coef.reshape(chunk.shape)
            if reconstruct:
                torch.matmul(d_h.T @ coef, d_w_t.T, out=dest)
            else:
                dest.copy_(coef)
        return out


def _keep_largest(coef: Tensor, k: int) -> None:
    """Zero, in place, all but the ``k`` largest-magnitude entries of each row of ``coef``.

    A partial sort (``torch.topk``) of whichever side is smaller: the ``k`` kept (then
    copied into zeros) or the ``n − k`` dropped (then zeroed in place). Ties at the
    threshold are broken by ``torch.topk``, so exactly ``k`` survive either way. (A
    values-only ``np.partition`` threshold measured 1.1–1.5× slower here: it runs on
    one thread; an int32 view of the magnitudes sped up random data but not MNIST.)
    """
    n = coef.shape[1]
    magnitude = coef.abs()
    if 2 * k <= n:
        idx = magnitude.topk(k, dim=1, sorted=False).indices
        kept = coef.gather(1, idx)
        coef.zero_().scatter_(1, idx, kept)
    else:
        idx = magnitude.topk(n - k, dim=1, largest=False, sorted=False).indices
        coef.scatter_(1, idx, 0.0)


@hookimpl
def register_transforms(register):
    register(Identity)
    register(DCT)
