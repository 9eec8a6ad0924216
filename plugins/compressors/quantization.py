"""Quantisation: a per-layer codebook, learned (k-means, exact 1-D optimum) or fixed.

Every compressor here stores, per layer, one codebook index per weight and the codebook:
``numel × ⌈log2 C⌉ + (bits of the codebook)`` where C is the number of codebook entries
actually used (≤ K; fewer only when the layer has fewer distinct values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from benchharness import Compressor, CompressorOptions
from benchharness.coding import FLOAT_BITS, LayerwiseWeights, index_bits, top_k_mask

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import Tensor


# the k-means solvers (numpy) are imported when quantising; they stay importable from here
_KMEANS = ("kmeans_1d", "optimal_kmeans_1d")


# --------------------------------------------------------------------------------- Θ
@dataclasses.dataclass(frozen=True)
class CodebookLayer:
    """One layer of Θ: ``weight = codebook[codes]``."""

    shape: torch.Size
    dtype: torch.dtype
    codebook: Tensor  # (C,), increasing
    codes: Tensor  # int64, one per weight (flat)
    bits_per_code: int
    codebook_bits: int

    def dense(self) -> Tensor:
        return self.codebook.to(self.dtype)[self.codes].view(self.shape)

    def bits(self) -> int:
        return self.codes.numel() * self.bits_per_code + self.codebook_bits

    def macs(self, dense_macs: int) -> int:
        return dense_macs  # every weight is still multiplied


class CodebookWeights(LayerwiseWeights):
    """Θ of the quantisers: per layer, a codebook and one index per weight."""

    layers: dict[str, CodebookLayer]


def _learned_layer(w: Tensor, codebook: np.ndarray, codes: np.ndarray) -> CodebookLayer:
    """A layer whose codebook is stored: ⌈log2 C⌉ bits per weight + 32 per entry."""
    import torch

    size = int(codebook.size)
    return CodebookLayer(
        shape=w.shape,
        dtype=w.dtype,
        codebook=torch.as_tensor(codebook, device=w.device).to(w.dtype),
        codes=torch.as_tensor(codes, dtype=torch.int64, device=w.device),
        bits_per_code=index_bits(size),
        codebook_bits=FLOAT_BITS * size,
    )


# --------------------------------------------------------------------- compressors
class QuantizeOptions(CompressorOptions):
    k: int = Field(
        ge=2,
        le=65536,
        description="codebook size K per layer, 2 ≤ K ≤ 65536; each weight costs "
        "⌈log2 K⌉ bits and each codebook entry 32",
    )
    method: Literal["kmeans", "optimal"] = Field(
        default="kmeans",
        description="'kmeans': Lloyd's algorithm, best of several starts (quantile "
        "initialisation, k-means++ restarts and, in a training scheme's later C steps, "
        "the previous codebook); fast, a local optimum. 'optimal': the exact 1-D optimum "
        "by dynamic programming, O(K·m log m) for m distinct values",
    )
    max_iter: int = Field(
        default=300,
        ge=1,
        le=100_000,
        description="for method = 'kmeans': at most this many Lloyd iterations per start "
        "and layer (it stops earlier once the partition is stable)",
    )
    restarts: int = Field(
        default=4,
        ge=0,
        le=1000,
        description="for method = 'kmeans': k-means++ seedings tried besides the quantile "
        "start (0 = the quantile start only); the lowest-error result is kept",
    )
    seed: int = Field(
        default=0,
        ge=0,
        description="for method = 'kmeans': seed of the k-means++ draws (fixed, so the "
        "result depends on the weights alone, not on the job's seed)",
    )
    warm_start: bool = Field(
        default=True,
        description="for method = 'kmeans': when the same compressor is called again on "
        "weights of the same names (the next C step of LC or iDC), also start from each "
        "layer's previous codebook, as the LC toolkit does; the lowest-error start wins, "
        "so this is never worse than a cold call on the same weights",
    )


class Quantize(Compressor):
    """Adaptive quantisation: a K-entry codebook per layer (k-means or exact optimum).

    Π minimises Σ (w − c_code)² per layer. ``method = "kmeans"``: Lloyd's algorithm in
    1-D (exact assignment on the sorted values) from the quantiles (i + ½)/K of the
    distinct values and from ``restarts`` k-means++ seedings (fixed ``seed``), keeping
    the lowest error; so it is deterministic and never worse than the quantile start
    alone. Warm start (``warm_start``): the instance remembers each layer's last
    codebook by weight name, and a later call (the next LC / iDC C step: ``with_mu``
    returns this same instance) adds it, topped up to K by k-means++, as one more start.
    A fresh instance (DC, post-training compression) has nothing to remember.
    ``method = "optimal"``: the global 1-D optimum by dynamic programming. A layer with
    ≤ K distinct values is stored exactly, so Π(Δ(Θ)) = Θ. Bits per layer:
    numel × ⌈log2 C⌉ + 32·C (C ≤ K entries).
    """

    name = "quantize"
    version = "1"
    Options = QuantizeOptions

    def __init__(self, options: QuantizeOptions | None = None):
        super().__init__(options)
        #: the last codebook of each weight name (the warm start of the next call)
        self.codebooks: dict[str, np.ndarray] = {}

    def compress(self, weights: Mapping[str, Tensor]) -> CodebookWeights:
        import torch

        from .kmeans import kmeans_1d, optimal_kmeans_1d

        opts = self.options
        layers = {}
        for name, w in weights.items():
            x = w.detach().reshape(-1).to("cpu", torch.float64).numpy()
            if opts.method == "optimal":
                codebook, codes = optimal_kmeans_1d(x, opts.k)
            else:
                codebook, codes = kmeans_1d(
                    x,
                    opts.k,
                    opts.max_iter,
                    restarts=opts.restarts,
                    seed=opts.seed,
                    init=self.codebooks.get(name) if opts.warm_start else None,
                )
                self.codebooks[name] = codebook
            layers[name] = _learned_layer(w, codebook, codes)
        return CodebookWeights(layers)


def _fixed_layer(
    w: Tensor,
    codebook: list[float] | Tensor,
    codes: Tensor,
    *,
    bits_per_code: int,
    codebook_bits: int,
) -> CodebookLayer:
    import torch

    return CodebookLayer(
        shape=w.shape,
        dtype=w.dtype,
        codebook=torch.as_tensor(codebook, dtype=torch.float64, device=w.device).to(w.dtype),
        codes=codes.reshape(-1).to(torch.int64),
        bits_per_code=bits_per_code,
        codebook_bits=codebook_bits,
    )


class Binarize(Compressor):
    """Binarisation to the fixed codebook {−1, +1}: w ← sign(w) (sign(0) = +1).

    The nearest point of {−1, +1}^n. Bits: 1 per weight, no codebook.
    """

    name = "binarize"
    version = "1"
    Options = CompressorOptions

    def compress(self, weights: Mapping[str, Tensor]) -> CodebookWeights:
        return CodebookWeights(
            {
                name: _fixed_layer(
                    w, [-1.0, 1.0], w.detach() >= 0, bits_per_code=1, codebook_bits=0
                )
                for name, w in weights.items()
            }
        )


class BinarizeScaled(Compressor):
    """Scaled binarisation: per layer {−a, +a} with the optimal a = mean |w|.

    For codes sign(w) the best scale is a = mean|w| (computed in float64). Bits per
    layer: 1 per weight + 32 for a.
    """

    name = "binarize_scaled"
    version = "1"
    Options = CompressorOptions

    def compress(self, weights: Mapping[str, Tensor]) -> CodebookWeights:
        import torch

        layers = {}
        for name, w in weights.items():
            flat = w.detach().reshape(-1)
            a = flat.double().abs().mean()
            layers[name] = _fixed_layer(
                w, torch.stack((-a, a)), flat >= 0, bits_per_code=1, codebook_bits=FLOAT_BITS
            )
        return CodebookWeights(layers)


class TernarizeScaled(Compressor):
    """Scaled ternarisation: per layer {−a, 0, +a} with the optimal threshold and scale.

    With j nonzeros these are the j largest |w| and a = their mean, leaving error
    Σw² − (Σ_top-j |w|)²/j; the j maximising (Σ_top-j |w|)²/j is found for all j at once
    from the sorted cumulative sums (float64; ties to the smaller j, and to the earlier
    weight at the threshold). Bits per layer: 2 per weight (⌈log2 3⌉) + 32 for a.
    """

    name = "ternarize_scaled"
    version = "1"
    Options = CompressorOptions

    def compress(self, weights: Mapping[str, Tensor]) -> CodebookWeights:
        import torch

        layers = {}
        for name, w in weights.items():
            flat = w.detach().reshape(-1)
            magnitude = flat.double().abs()
            top = torch.cumsum(torch.sort(magnitude, descending=True).values, 0)
            count = torch.arange(1, top.numel() + 1, dtype=top.dtype, device=top.device)
            j = int(torch.argmax(top * top / count)) + 1
            a = top[j - 1] / j
            nonzero = top_k_mask(magnitude, j)
            codes = torch.where(nonzero, torch.where(flat >= 0, 2, 0), 1)
            layers[name] = _fixed_layer(
                w,
                torch.stack((-a, torch.zeros_like(a), a)),
                codes,
                bits_per_code=2,
                codebook_bits=FLOAT_BITS,
            )
        return CodebookWeights(layers)


def __getattr__(name: str) -> Any:
    if name in _KMEANS:
        from . import kmeans

        return getattr(kmeans, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
