"""Θ of ``sparse_lowrank`` (A column-sparse + B = U·V per layer: storage, bits, MACs) and
the parametrisation that keeps that structure while fine-tuning."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from benchharness.coding import (
    FLOAT_BITS,
    LayerwiseWeights,
    column_sparse_bits,
    csr_bits,
    factor_bits,
    scaled_macs,
)
from benchharness.compression import CompressionContext

from .admm import (
    AdmmResult,
)


# ------------------------------------------------------------------------------ Θ
@dataclasses.dataclass(frozen=True)
class SparseLowRankLayer:
    """One layer of Θ: W = A + U·Vᵀ, A kept only on ``columns`` (of the lowered m × n).

    ``a`` holds the kept columns (m × k), ``us`` (m × r) and ``v`` (n × r) the factors.
    """

    shape: torch.Size
    dtype: torch.dtype
    columns: Tensor  # int64, increasing: the nonzero columns of A
    a: Tensor
    us: Tensor
    v: Tensor

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape.numel() // self.shape[0]

    @property
    def rank(self) -> int:
        return self.us.shape[1]

    @property
    def kept_columns(self) -> int:
        return self.columns.numel()

    @property
    def nnz(self) -> int:
        return int(torch.count_nonzero(self.a))

    def sparse_matrix(self) -> Tensor:
        out = self.a.new_zeros(self.rows, self.cols)
        return out.index_copy(1, self.columns, self.a)

    def dense(self) -> Tensor:
        return (self.sparse_matrix() + self.us @ self.v.T).to(self.dtype).view(self.shape)

    def csr_bits(self) -> int:
        return csr_bits(self.rows, self.cols, self.nnz)

    def column_bits(self) -> int:
        return column_sparse_bits(self.rows, self.cols, self.kept_columns)

    def stored_dense(self) -> bool:
        return self._parts_bits() >= FLOAT_BITS * self.rows * self.cols

    def _parts_bits(self) -> int:
        sparse = min(self.csr_bits(), self.column_bits())
        return sparse + factor_bits(self.rows, self.cols, self.rank)

    def bits(self) -> int:
        return min(self._parts_bits(), FLOAT_BITS * self.rows * self.cols)

    def macs(self, dense_macs: int) -> int:
        total = self.rows * self.cols
        return scaled_macs(
            dense_macs, min(self.nnz + self.rank * (self.rows + self.cols), total), total
        )


class SparseLowRankWeights(LayerwiseWeights):
    """Θ of ``sparse_lowrank``: per approximated layer, A (column-sparse) and U, V."""

    layers: dict[str, SparseLowRankLayer]


def layer_theta(weight: Tensor, result: AdmmResult) -> SparseLowRankLayer:
    columns = torch.nonzero(result.a.abs().sum(0), as_tuple=True)[0]
    return SparseLowRankLayer(
        weight.shape,
        weight.dtype,
        columns,
        result.a[:, columns].contiguous(),
        result.us.contiguous(),
        result.v.contiguous(),
    )


# ---------------------------------------------------------------------- fine-tuning
class Structured(nn.Module):
    """Parametrization W = A + U·Vᵀ with A living only on the kept columns."""

    def __init__(self, layer: SparseLowRankLayer):
        super().__init__()
        self.shape, self.rows, self.cols = layer.shape, layer.rows, layer.cols
        self.register_buffer("columns", layer.columns.clone())
        self.a = nn.Parameter(layer.a.detach().clone())
        self.us = nn.Parameter(layer.us.detach().clone())
        self.v = nn.Parameter(layer.v.detach().clone())

    def forward(self, _original: Tensor) -> Tensor:
        sparse = self.a.new_zeros(self.rows, self.cols).index_copy(1, self.columns, self.a)
        return (sparse + self.us @ self.v.T).view(self.shape)

    def read(self, layer: SparseLowRankLayer) -> SparseLowRankLayer:
        return dataclasses.replace(
            layer, a=self.a.detach().clone(), us=self.us.detach().clone(), v=self.v.detach().clone()
        )


def fine_tune_structured(
    ctx: CompressionContext,
    work: nn.Module,
    layers: dict[str, SparseLowRankLayer],
    table: dict[str, Any],
) -> dict[str, SparseLowRankLayer]:
    """Train ``work`` with every approximated layer held in its structure; return Θ."""
    modules = dict(work.named_modules())
    for key, layer in layers.items():
        module = modules[key.removesuffix("weight").removesuffix(".")]
        holder = Structured(layer).to(module.weight.device)
        parametrize.register_parametrization(module, "weight", holder, unsafe=True)
        module.parametrizations.weight.original.requires_grad_(False)
    tuned = dict(ctx.fine_tune(work, table).named_modules())
    out = {}
    for key, layer in layers.items():
        module = tuned[key.removesuffix("weight").removesuffix(".")]
        out[key] = module.parametrizations.weight[0].read(layer)
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return out
