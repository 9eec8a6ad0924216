"""Low-rank factorisation: fixed rank, or a rank per layer chosen by a cost–error trade-off.

A weight is taken as an m × n matrix W (m = outputs, n = inputs; a conv weight
``(out, in, kh, kw)`` is lowered to ``(out, in·kh·kw)``) and stored as W ≈ (U·S) Vᵀ with
U·S of m × r and V of n × r, from the SVD (Eckart–Young: the best rank-r approximation).
Bits: 32·r·(m + n). Effective MACs: the layer runs as two layers (n → r, then r → m) at
each output position, so ``dense_macs × r·(m + n) / (m·n)``. A rank r with
r·(m + n) ≥ m·n still stores the factors (no saving): pick ranks accordingly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from benchharness import BenchError, Compressor, CompressorOptions
from benchharness.coding import LayerwiseWeights, as_matrix, factor_bits, scaled_macs

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


@dataclasses.dataclass(frozen=True)
class FactorLayer:
    """One layer of Θ: ``W = us @ v.T`` reshaped to ``shape``."""

    shape: torch.Size
    dtype: torch.dtype
    us: Tensor  # (m, r): left singular vectors times singular values
    v: Tensor  # (n, r)

    @property
    def rank(self) -> int:
        return self.us.shape[1]

    def dense(self) -> Tensor:
        return (self.us @ self.v.T).to(self.dtype).view(self.shape)

    def bits(self) -> int:
        return factor_bits(self.us.shape[0], self.v.shape[0], self.rank)

    def macs(self, dense_macs: int) -> int:
        m, n = self.us.shape[0], self.v.shape[0]
        return scaled_macs(dense_macs, self.rank * (m + n), m * n)

    def deploy(self, module: nn.Module) -> nn.Module | None:
        """The layer as two: ``n → r`` (Vᵀ; a conv keeps its kernel) then ``r → m`` (U·S,
        the bias; 1×1 for a conv). None at rank 0 (the layer outputs its bias)."""
        from benchharness.deploy import factored

        return factored(module, self.us, self.v)


class FactorWeights(LayerwiseWeights):
    """Θ of the low-rank compressors: per layer the factors (U·S, V)."""

    layers: dict[str, FactorLayer]

    def ranks(self) -> dict[str, int]:
        return {name: layer.rank for name, layer in self.layers.items()}


def _svd(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin SVD of the lowered weight in float64."""
    import torch

    return torch.linalg.svd(as_matrix(w.detach()).double(), full_matrices=False)


def _factor_layer(w: Tensor, u: Tensor, s: Tensor, vh: Tensor, rank: int) -> FactorLayer:
    us = (u[:, :rank] * s[:rank]).to(w.dtype)
    v = vh[:rank].T.to(w.dtype).contiguous()
    return FactorLayer(w.shape, w.dtype, us, v)


# ------------------------------------------------------------------------ fixed rank
class LowRankOptions(CompressorOptions):
    rank: int = Field(
        ge=1,
        description="rank r ≥ 1 of every selected layer, capped at min(m, n) of the layer",
    )


class LowRank(Compressor):
    """Fixed-rank factorisation by truncated SVD: W ≈ (U·S) Vᵀ, rank r per layer.

    Convs are lowered to (out, in·kh·kw). Bits: 32·r·(m + n) per layer. Effective MACs:
    ``dense_macs × r·(m + n)/(m·n)``.
    """

    name = "lowrank"
    version = "1"
    Options = LowRankOptions

    def compress(self, weights: Mapping[str, Tensor]) -> FactorWeights:
        layers = {}
        for name, w in weights.items():
            u, s, vh = _svd(w)
            layers[name] = _factor_layer(w, u, s, vh, min(self.options.rank, s.numel()))
        return FactorWeights(layers)


# --------------------------------------------------------------------- rank selection
class LowRankSelectOptions(CompressorOptions):
    alpha: float = Field(
        ge=0.0,
        description="weight α ≥ 0 of the cost: each layer takes the rank r minimising "
        "α·cost(r) + μ/2·Σ_{i>r} s_i²",
    )
    mu: float = Field(
        default=1.0,
        gt=0.0,
        description="μ > 0 of the same objective; the LC scheme replaces it at every step "
        "(see with_mu). For a single compression only α/μ matters",
    )
    cost: Literal["storage", "flops"] = Field(
        default="storage",
        description="'storage': cost(r) = r·(m + n) stored values; 'flops': cost(r) = "
        "r·(m + n)·positions, the layer's multiply-accumulates per sample (positions = "
        "dense MACs/(m·n), from the model: a conv counts every output position)",
    )


class LowRankSelect(Compressor):
    """Low-rank with per-layer rank selection: min_r α·cost(r) + μ/2·Σ_{i>r} s_i².

    For each layer every r in 0..min(m, n) is scored at once from the SVD (Idelbayev &
    Carreira-Perpiñán's rank-selection C step); ties go to the smaller rank; r = 0 stores
    nothing and zeroes the layer. ``with_mu(mu)`` returns a copy with another μ: the hook
    the LC scheme uses to follow its μ schedule. Bits and MACs as for ``lowrank``.
    """

    name = "lowrank_select"
    version = "1"
    Options = LowRankSelectOptions

    def with_mu(self, mu: float) -> LowRankSelect:
        """A copy of this compressor with μ replaced (validated): the LC C-step hook."""
        copy = type(self)(self.Options(**{**self.options.model_dump(), "mu": mu}))
        copy.layer_macs = self.layer_macs
        return copy

    def compress(self, weights: Mapping[str, Tensor]) -> FactorWeights:
        layers = {}
        for name, w in weights.items():
            u, s, vh = _svd(w)
            layers[name] = _factor_layer(w, u, s, vh, self.select_rank(name, w, s))
        return FactorWeights(layers)

    def objective(self, name: str, weight: Tensor, singular_values: Tensor) -> Tensor:
        """α·cost(r) + μ/2·Σ_{i>r} s_i² for r = 0..len(s) (float64)."""
        import torch

        opts = self.options
        m, n = as_matrix(weight).shape
        s2 = singular_values.double() ** 2
        tail = torch.cat((torch.cumsum(s2.flip(0), 0).flip(0), s2.new_zeros(1)))
        unit = float(m + n)
        if opts.cost == "flops":
            if name not in self.layer_macs:
                raise BenchError(
                    f"compressor lowrank_select: cost = 'flops' needs the MACs of {name}, "
                    "which the harness did not provide (is it a Linear/Conv weight?)"
                )
            unit *= self.layer_macs[name] / (m * n)
        ranks = torch.arange(s2.numel() + 1, dtype=torch.float64, device=s2.device)
        return opts.alpha * unit * ranks + opts.mu / 2 * tail

    def select_rank(self, name: str, weight: Tensor, singular_values: Tensor) -> int:
        import torch

        return int(torch.argmin(self.objective(name, weight, singular_values)))
