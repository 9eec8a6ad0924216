"""Quantisation: a per-layer codebook, learned (k-means, exact 1-D optimum) or fixed.

Every compressor here stores, per layer, one codebook index per weight and the codebook:
``numel × ⌈log2 C⌉ + (bits of the codebook)`` where C is the number of codebook entries
actually used (≤ K; fewer only when the layer has fewer distinct values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from benchharness import Compressor, CompressorOptions

from ._common import FLOAT_BITS, LayerwiseWeights, index_bits, top_k_mask


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
    size = int(codebook.size)
    return CodebookLayer(
        shape=w.shape,
        dtype=w.dtype,
        codebook=torch.as_tensor(codebook, device=w.device).to(w.dtype),
        codes=torch.as_tensor(codes, dtype=torch.int64, device=w.device),
        bits_per_code=index_bits(size),
        codebook_bits=FLOAT_BITS * size,
    )


# ------------------------------------------------------------------ 1-D k-means
def _assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-centroid codes for sorted ``centroids``; unused centroids are dropped."""
    midpoints = (centroids[1:] + centroids[:-1]) / 2
    codes = np.searchsorted(midpoints, x, side="right")
    used = np.bincount(codes, minlength=centroids.size) > 0
    if used.all():
        return centroids, codes
    return centroids[used], (np.cumsum(used) - 1)[codes]


def _distinct(sorted_x: np.ndarray) -> np.ndarray:
    return sorted_x[np.concatenate(([True], sorted_x[1:] != sorted_x[:-1]))]


def kmeans_1d(x: np.ndarray, k: int, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm in 1-D: ``(codebook, codes)`` with ``len(codebook) ≤ k``.

    Deterministic: the centroids start at the quantiles (i + ½)/k of the distinct values.
    A cluster is a contiguous run of the sorted values, so one iteration is k
    binary searches plus prefix-sum differences, O(k log n). Stops when the partition
    stops changing (then every centroid is its cluster's mean) or after ``max_iter``.
    With at most k distinct values the codebook is those values (zero error).
    """
    xs = np.sort(x)
    distinct = _distinct(xs)
    if distinct.size <= k:
        return distinct, np.searchsorted(distinct, x)
    centroids = distinct[np.floor((np.arange(k) + 0.5) * distinct.size / k).astype(np.int64)]
    prefix = np.concatenate(([0.0], np.cumsum(xs)))
    edges = None
    for _ in range(max_iter):
        midpoints = (centroids[1:] + centroids[:-1]) / 2
        new_edges = np.concatenate(([0], np.searchsorted(xs, midpoints, side="left"), [xs.size]))
        if edges is not None and np.array_equal(new_edges, edges):
            break
        edges = new_edges
        counts = np.diff(edges)
        sums = prefix[edges[1:]] - prefix[edges[:-1]]
        # an empty cluster keeps its centroid, which stays between its neighbours
        centroids = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
    return _assign(x, centroids)


def optimal_kmeans_1d(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact minimiser of Σ (x_i − c_{code_i})² over codebooks of ≤ k values.

    Dynamic programming over the m sorted distinct values (weighted by multiplicity):
    D_k(i) = min_j D_{k−1}(j − 1) + SSE(j..i). The optimal split j is monotone in i
    (the SSE cost is Monge), so each row is filled by divide and conquer, processed one
    recursion level at a time with numpy: O(k·m log m) time, O(k·m) memory (int32
    back-pointers; k = 256 on 235k distinct values needs ≈ 240 MB and tens of seconds).
    """
    values, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    m = values.size
    if m <= k:
        return values, inverse.reshape(-1)
    centred = values - np.average(values, weights=counts)
    w_prefix = np.concatenate(([0.0], np.cumsum(counts, dtype=np.float64)))
    s1 = np.concatenate(([0.0], np.cumsum(counts * centred)))
    s2 = np.concatenate(([0.0], np.cumsum(counts * centred * centred)))

    def sse(j: np.ndarray, i: np.ndarray) -> np.ndarray:  # values j..i inclusive
        total = s1[i + 1] - s1[j]
        return np.maximum(s2[i + 1] - s2[j] - total * total / (w_prefix[i + 1] - w_prefix[j]), 0.0)

    all_i = np.arange(m)
    cost = sse(np.zeros(m, dtype=np.int64), all_i)
    back = []
    for clusters in range(2, k + 1):
        cost, split = _dp_row(cost, sse, clusters - 1, m)
        back.append(split)
    # walk back: cluster `clusters` covers starts[clusters-1] .. end
    starts = np.zeros(k, dtype=np.int64)
    end = m - 1
    for clusters in range(k, 1, -1):
        starts[clusters - 1] = back[clusters - 2][end]
        end = starts[clusters - 1] - 1
    ends = np.concatenate((starts[1:], [m]))
    sums = np.add.reduceat(counts * values, starts)
    codebook = sums / (w_prefix[ends] - w_prefix[starts])
    cluster_of_value = np.searchsorted(starts, all_i, side="right") - 1
    return codebook, cluster_of_value[inverse.reshape(-1)]


def _dp_row(prev: np.ndarray, sse, first: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Row D(i) = min_{first ≤ j ≤ i} prev[j−1] + sse(j, i) for i ≥ first, by level-wise
    divide and conquer on the monotone argmin. Entries i < first are left at 0."""
    cost = np.zeros(m)
    split = np.zeros(m, dtype=np.int32)
    lo = np.array([first])
    hi = np.array([m - 1])
    opt_lo = np.array([first])
    opt_hi = np.array([m - 1])
    while lo.size:
        mid = (lo + hi) // 2
        j_hi = np.minimum(opt_hi, mid)
        lengths = j_hi - opt_lo + 1  # ≥ 1: opt_lo ≤ lo ≤ mid
        seg_start = np.cumsum(lengths) - lengths
        total = int(lengths.sum())
        j = np.arange(total) - np.repeat(seg_start - opt_lo, lengths)
        value = prev[j - 1] + sse(j, np.repeat(mid, lengths))
        best = np.minimum.reduceat(value, seg_start)
        position = np.where(value <= np.repeat(best, lengths), np.arange(total), total)
        best_j = j[np.minimum.reduceat(position, seg_start)]  # leftmost minimiser
        cost[mid] = best
        split[mid] = best_j
        left = mid > lo
        right = mid < hi
        lo, hi, opt_lo, opt_hi = (
            np.concatenate((lo[left], mid[right] + 1)),
            np.concatenate((mid[left] - 1, hi[right])),
            np.concatenate((opt_lo[left], best_j[right])),
            np.concatenate((best_j[left], opt_hi[right])),
        )
    return cost, split


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
        description="'kmeans': Lloyd's algorithm from quantile initialisation (fast, a "
        "local optimum); 'optimal': the exact 1-D optimum by dynamic programming, "
        "O(K·m log m) for m distinct values",
    )
    max_iter: int = Field(
        default=300,
        ge=1,
        le=100_000,
        description="for method = 'kmeans': at most this many Lloyd iterations per layer "
        "(it stops earlier once the partition is stable)",
    )


class Quantize(Compressor):
    """Adaptive quantisation: a K-entry codebook per layer (k-means or exact optimum).

    Π minimises Σ (w − c_code)² per layer: k-means (Lloyd, deterministic quantile
    initialisation over the distinct values) or, with ``method = "optimal"``, the global
    1-D optimum by dynamic programming. A layer with ≤ K distinct values is stored
    exactly, so Π(Δ(Θ)) = Θ. Bits per layer: numel × ⌈log2 C⌉ + 32·C (C ≤ K entries).
    """

    name = "quantize"
    version = "1"
    Options = QuantizeOptions

    def compress(self, weights: Mapping[str, Tensor]) -> CodebookWeights:
        opts = self.options
        layers = {}
        for name, w in weights.items():
            x = w.detach().reshape(-1).to("cpu", torch.float64).numpy()
            if opts.method == "optimal":
                codebook, codes = optimal_kmeans_1d(x, opts.k)
            else:
                codebook, codes = kmeans_1d(x, opts.k, opts.max_iter)
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
