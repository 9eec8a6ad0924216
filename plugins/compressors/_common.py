"""Helpers shared by the compressors: exact bit accounting and deterministic top-k.

Every stored real number (a kept weight, a codebook entry, a scale, a factor entry) is
counted as a 32-bit float, whatever the dtype of the tensor being compressed.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import Tensor

from benchharness import Compressed

FLOAT_BITS = 32


class LayerTheta(Protocol):
    """One layer's part of Θ."""

    def dense(self) -> Tensor: ...

    def bits(self) -> int: ...

    def macs(self, dense_macs: int) -> int: ...


class LayerwiseWeights(Compressed):
    """Θ made of independent per-layer parts (:class:`LayerTheta`), keyed by weight name."""

    realised = True

    def __init__(self, layers: dict[str, LayerTheta]):
        self.layers = layers

    def decompress(self) -> dict[str, Tensor]:
        return {name: layer.dense() for name, layer in self.layers.items()}

    def bits(self) -> int:
        return sum(layer.bits() for layer in self.layers.values())

    def effective_macs(self, name: str, dense_macs: int) -> int:
        layer = self.layers.get(name)
        return dense_macs if layer is None else layer.macs(dense_macs)


def index_bits(choices: int) -> int:
    """⌈log2 choices⌉: the bits that code one of ``choices`` alternatives (0 if only one)."""
    return max(choices - 1, 0).bit_length()


def scaled_macs(dense_macs: int, kept: int, total: int) -> int:
    """``dense_macs × kept / total``, exact when ``total`` divides ``dense_macs``.

    That is the case for a layer's weight: its dense MACs are its number of weights times
    the number of output positions (1 for Linear).
    """
    return dense_macs * kept // total if total else dense_macs


def fraction_count(fraction: float, total: int) -> int:
    """``round(fraction × total)`` (halves round up), at least 1 when ``total`` > 0."""
    return min(total, max(1, math.floor(fraction * total + 0.5))) if total else 0


def as_matrix(weight: Tensor) -> Tensor:
    """The weight as ``(out, in·kh·kw...)``: a Linear weight as is, a conv one lowered."""
    return weight.reshape(weight.shape[0], -1)


def top_k_mask(scores: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` largest entries of 1-D ``scores``, exactly ``k`` of them.

    Ties at the threshold go to the lower index, so the result is deterministic. O(n).
    """
    n = scores.numel()
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    threshold = torch.kthvalue(scores, n - k + 1).values  # the k-th largest
    above = scores > threshold
    tied = scores == threshold
    need = k - int(above.sum())
    return above | (tied & (torch.cumsum(tied, 0) <= need))
