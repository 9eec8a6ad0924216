"""Θ of ``greedy_random`` (:mod:`.greedy`): one :class:`GreedyLayer` per compressed
layer and its exact bit count."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from benchharness.coding import (
    FLOAT_BITS,
    LayerwiseWeights,
    index_bits,
    scaled_macs,
    sparse_bits,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = ["GreedyLayer", "GreedyWeights"]


@dataclasses.dataclass(frozen=True)
class GreedyLayer:
    """One compressed layer. ``mode`` 'prune': the nonzero values (kept draws w/p and the
    uncompressed weights) at their flat positions; 'structured': the units (input column
    blocks or output rows) not pruned, with a 1-bit-per-unit mask; 'quantize': one code
    per weight over 2k + 1 grid levels plus an escape code marking the uncompressed
    weights, whose 32-bit values follow, and the 32-bit scale M."""

    shape: torch.Size
    dtype: torch.dtype
    mode: str
    values: Tensor  # float64 lowered matrix, exactly what the codes decode to
    compressed: Tensor  # bool, lowered shape
    k: int = 0
    units: int = 0  # structured: number of prunable units
    removed_values: int = 0  # structured: weights inside pruned units

    def dense(self) -> Tensor:
        return self.values.to(self.dtype).reshape(self.shape)

    @property
    def nnz(self) -> int:
        return int((self.values != 0).sum())

    def bits(self) -> int:
        numel = self.values.numel()
        if self.mode == "prune":
            return sparse_bits(numel, self.nnz)
        if self.mode == "structured":
            return FLOAT_BITS * (numel - self.removed_values) + self.units
        escaped = numel - int(self.compressed.sum())
        return numel * index_bits(2 * self.k + 2) + FLOAT_BITS * escaped + FLOAT_BITS

    def macs(self, dense_macs: int) -> int:
        if self.mode == "quantize":
            return dense_macs
        stored = self.nnz if self.mode == "prune" else self.values.numel() - self.removed_values
        return scaled_macs(dense_macs, stored, self.values.numel())


class GreedyWeights(LayerwiseWeights):
    """Θ of ``greedy_random``; ``order`` keeps, per layer, the flat indices (or units) in
    the order the greedy loop compressed them."""

    realised = True  # pruned values are absent and quantised ones are codes (see bits)

    def __init__(self, layers: dict[str, GreedyLayer], order: dict[str, list[int]]):
        super().__init__(layers)
        self.order = order
