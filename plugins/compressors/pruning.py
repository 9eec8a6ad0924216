"""Pruning: ℓ0 (top-κ magnitude), ℓ1-ball projection, and whole-neuron removal.

Storage of an unstructured sparse layer (``prune``, ``prune_l1``): each nonzero weight
costs its 32-bit value plus its flat position in the layer coded with ⌈log2 numel⌉ bits,
so a layer of ``numel`` weights with ``nnz`` nonzeros takes ``nnz × (32 + ⌈log2 numel⌉)``
bits. No per-layer header is counted (the shapes are part of the architecture).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from benchharness import BenchError, Compressor, CompressorOptions
from benchharness.coding import (
    FLOAT_BITS,
    LayerwiseWeights,
    as_matrix,
    fraction_count,
    scaled_macs,
    sparse_bits,
    top_k_mask,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


# ------------------------------------------------------------------ unstructured Θ
@dataclasses.dataclass(frozen=True)
class SparseLayer:
    """One layer of Θ: the kept values at their (sorted) flat positions."""

    shape: torch.Size
    dtype: torch.dtype
    positions: Tensor  # int64, increasing
    values: Tensor

    @property
    def numel(self) -> int:
        return self.shape.numel()

    @property
    def nnz(self) -> int:
        return self.positions.numel()

    def dense(self) -> Tensor:
        import torch

        out = torch.zeros(self.numel, dtype=self.dtype, device=self.values.device)
        out[self.positions] = self.values.to(self.dtype)
        return out.view(self.shape)

    def bits(self) -> int:
        return sparse_bits(self.numel, self.nnz)

    def macs(self, dense_macs: int) -> int:
        return scaled_macs(dense_macs, self.nnz, self.numel)

    def deploy(self, module: nn.Module) -> nn.Module | None:
        """The layer with a torch sparse CSR weight (Linear; Conv2d by im2col); None for
        other convs."""
        from benchharness.deploy import sparse

        return sparse(module, self.dense())


class SparseWeights(LayerwiseWeights):
    """Θ of ``prune`` / ``prune_l1``: per layer, kept values and ⌈log2 numel⌉-bit indices."""

    layers: dict[str, SparseLayer]


def _sparse_from_dense(name_to_dense: Mapping[str, Tensor], dtypes: Mapping[str, torch.dtype]):
    import torch

    layers = {}
    for name, dense in name_to_dense.items():
        flat = dense.reshape(-1)
        positions = torch.nonzero(flat, as_tuple=True)[0]
        layers[name] = SparseLayer(dense.shape, dtypes[name], positions, flat[positions])
    return SparseWeights(layers)


def _sparse_from_mask(weights: Mapping[str, Tensor], masks: Mapping[str, Tensor]):
    import torch

    layers = {}
    for name, w in weights.items():
        flat = w.detach().reshape(-1)
        positions = torch.nonzero(masks[name], as_tuple=True)[0]
        layers[name] = SparseLayer(w.shape, w.dtype, positions, flat[positions].clone())
    return SparseWeights(layers)


# ------------------------------------------------------------------------ ℓ0: prune
class PruneOptions(CompressorOptions):
    keep: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="fraction of weights kept, in (0, 1]: κ = round(keep × number of "
        "weights in the scope), at least 1. Give exactly one of keep and count",
    )
    count: int | None = Field(
        default=None,
        ge=1,
        description="number of weights kept, κ ≥ 1 (per layer when scope = 'layer', in "
        "total when 'global'; more than there are is an error). Give exactly one of "
        "keep and count",
    )
    scope: Literal["global", "layer"] = Field(
        default="global",
        description="'global': the κ largest |w| over all selected layers together; "
        "'layer': κ per layer",
    )

    @model_validator(mode="after")
    def _one_budget(self) -> PruneOptions:
        if (self.keep is None) == (self.count is None):
            raise ValueError("give exactly one of keep (a fraction) and count")
        return self


class Prune(Compressor):
    """Magnitude pruning (ℓ0 constraint): keep exactly the κ largest |w|.

    Π is the exact Euclidean projection onto {‖w‖0 ≤ κ}: zero all but the κ largest
    magnitudes, globally or per layer. Ties at the threshold go to the earlier weight
    (layer order as given, then flat index), so exactly κ survive. Storage per layer:
    ``nnz × (32 + ⌈log2 numel⌉)`` bits (32-bit value + flat position). Effective MACs
    of a layer: ``dense_macs × nnz / numel``.
    """

    name = "prune"
    version = "1"
    Options = PruneOptions

    def compress(self, weights: Mapping[str, Tensor]) -> SparseWeights:
        import torch

        opts = self.options
        if opts.scope == "layer":
            masks = {
                name: top_k_mask(w.detach().reshape(-1).abs(), self._budget(name, w.numel()))
                for name, w in weights.items()
            }
            return _sparse_from_mask(weights, masks)
        names = list(weights)
        if not names:
            return SparseWeights({})
        flat = torch.cat([weights[n].detach().reshape(-1).abs() for n in names])
        mask = top_k_mask(flat, self._budget("all selected layers", flat.numel()))
        split = mask.split([weights[n].numel() for n in names])
        return _sparse_from_mask(weights, dict(zip(names, split, strict=True)))

    def _budget(self, where: str, total: int) -> int:
        opts = self.options
        if opts.keep is not None:
            return fraction_count(opts.keep, total)
        if opts.count > total:
            raise BenchError(
                f"compressor prune: count = {opts.count} but {where} has only {total} weights"
            )
        return opts.count


# ---------------------------------------------------------------------- ℓ1 ball
class PruneL1Options(CompressorOptions):
    radius: float = Field(
        gt=0.0,
        description="radius r > 0 of the ℓ1 ball: Π(w) = argmin ‖v − w‖ s.t. ‖v‖1 ≤ r over "
        "all selected layers together",
    )


class PruneL1(Compressor):
    """ℓ1-ball projection (soft thresholding to ‖w‖1 ≤ radius over all layers).

    The exact Euclidean projection of Duchi et al. (2008): sort |w|, find the threshold
    θ from the cumulative sums, w ← sign(w)·max(|w| − θ, 0); weights already inside the
    ball are returned unchanged. Computed in float64. Stored like ``prune``: per layer
    ``nnz × (32 + ⌈log2 numel⌉)`` bits; effective MACs ``dense_macs × nnz / numel``.
    """

    name = "prune_l1"
    version = "1"
    Options = PruneL1Options

    def compress(self, weights: Mapping[str, Tensor]) -> SparseWeights:
        import torch

        names = list(weights)
        dtypes = {n: weights[n].dtype for n in names}
        if not names:
            return SparseWeights({})
        flat = torch.cat([weights[n].detach().reshape(-1).double() for n in names])
        projected = project_l1_ball(flat, self.options.radius)
        parts = projected.split([weights[n].numel() for n in names])
        dense = {
            n: p.view(weights[n].shape).to(dtypes[n]) for n, p in zip(names, parts, strict=True)
        }
        return _sparse_from_dense(dense, dtypes)


def project_l1_ball(v: Tensor, radius: float) -> Tensor:
    """Euclidean projection of 1-D ``v`` onto {x : ‖x‖1 ≤ radius} (Duchi et al., 2008)."""
    import torch

    magnitude = v.abs()
    if float(magnitude.sum()) <= radius:
        return v.clone()
    u = torch.sort(magnitude, descending=True).values
    css = torch.cumsum(u, 0)
    j = torch.arange(1, u.numel() + 1, dtype=u.dtype, device=u.device)
    support = u - (css - radius) / j > 0  # true on a prefix
    rho = int(support.sum())
    theta = (css[rho - 1] - radius) / rho
    return torch.sign(v) * torch.clamp(magnitude - theta, min=0)


# -------------------------------------------------------------------- structured
@dataclasses.dataclass(frozen=True)
class RowLayer:
    """One layer of Θ: which output rows survive, and their values."""

    shape: torch.Size
    dtype: torch.dtype
    kept: Tensor  # bool, one per output row
    rows: Tensor  # (kept rows, in·kh·kw)

    def dense(self) -> Tensor:
        import torch

        out = torch.zeros(
            self.shape[0], self.rows.shape[1], dtype=self.dtype, device=self.rows.device
        )
        out[self.kept] = self.rows
        return out.view(self.shape)

    def bits(self) -> int:
        return FLOAT_BITS * self.rows.numel() + self.kept.numel()

    def macs(self, dense_macs: int) -> int:
        return scaled_macs(dense_macs, int(self.kept.sum()), self.kept.numel())

    def deploy(self, module: nn.Module) -> nn.Module | None:
        """A layer with only the kept rows, scattered into the full output (a removed
        row outputs its bias)."""
        from benchharness.deploy import kept_rows

        return kept_rows(module, self.kept, self.rows)


class RowWeights(LayerwiseWeights):
    """Θ of ``prune_structured``: a bitmask over output rows plus the kept rows' values."""

    layers: dict[str, RowLayer]


class PruneStructuredOptions(CompressorOptions):
    keep: float = Field(
        gt=0.0,
        le=1.0,
        description="fraction of output neurons / conv filters (rows of each weight) kept "
        "per layer, in (0, 1]: round(keep × rows), at least 1",
    )


class PruneStructured(Compressor):
    """Structured pruning: per layer, keep the output neurons / filters of largest ℓ2 norm.

    Rows of the weight (``weight[i]``: one output neuron or conv filter) are ranked by
    their ℓ2 norm and the top round(keep × rows) kept (ties to the lower index); the
    others become zero. That is the exact projection onto "at most κ nonzero rows".
    Storage per layer: 32 bits per value of the kept rows + a 1-bit-per-row mask.
    Effective MACs: ``dense_macs × kept rows / rows``. Not counted: the next layer's
    inputs fed by a removed neuron could be dropped too, and a removed neuron's bias
    (kept by the harness) still feeds the next layer as a constant.
    """

    name = "prune_structured"
    version = "1"
    Options = PruneStructuredOptions

    def compress(self, weights: Mapping[str, Tensor]) -> RowWeights:
        import torch

        layers = {}
        for name, w in weights.items():
            matrix = as_matrix(w.detach())
            norms = torch.linalg.vector_norm(matrix.double(), dim=1)
            kept = top_k_mask(norms, fraction_count(self.options.keep, matrix.shape[0]))
            layers[name] = RowLayer(w.shape, w.dtype, kept, matrix[kept].clone())
        return RowWeights(layers)
