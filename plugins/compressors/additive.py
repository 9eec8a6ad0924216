"""Additive combinations: w ≈ Σ_i Δ_i(Θ_i), e.g. quantisation plus a sparse correction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import Field, ValidationError, field_validator
from torch import Tensor

from benchharness import Compressed, Compressor, CompressorOptions

from .lowrank import LowRank, LowRankSelect
from .pruning import Prune, PruneL1, PruneStructured
from .quantization import Binarize, BinarizeScaled, Quantize, TernarizeScaled

#: The compressors a part may name: the built-in ones of this package.
PART_CLASSES: dict[str, type[Compressor]] = {
    cls.name: cls
    for cls in (
        Prune,
        PruneL1,
        PruneStructured,
        Quantize,
        Binarize,
        BinarizeScaled,
        TernarizeScaled,
        LowRank,
        LowRankSelect,
    )
}


def _validation_message(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}" for e in error.errors()
    )


class AdditiveOptions(CompressorOptions):
    parts: list[dict[str, Any]] = Field(
        min_length=2,
        description="two or more compressor tables, each {name = ..., options...} naming a "
        f"built-in compressor ({', '.join(sorted(PART_CLASSES))}), e.g. "
        "[{name = 'quantize', k = 2}, {name = 'prune', keep = 0.01}]; parts take no "
        "'layers' (the additive compressor's own selection applies to all)",
    )
    iterations: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="alternating-optimisation sweeps, each re-fitting every part to the "
        "residual of the others; the sweep with the smallest error is returned",
    )

    @field_validator("parts")
    @classmethod
    def _valid_parts(cls, parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for i, table in enumerate(parts):
            options = dict(table)
            name = options.pop("name", None)
            if name not in PART_CLASSES:
                known = ", ".join(sorted(PART_CLASSES))
                raise ValueError(f"parts[{i}]: unknown compressor {name!r} (known: {known})")
            if "layers" in options:
                raise ValueError(f"parts[{i}] ({name}): 'layers' is set on the additive compressor")
            try:
                PART_CLASSES[name].Options(**options)
            except ValidationError as error:
                raise ValueError(f"parts[{i}] ({name}): {_validation_message(error)}") from None
        return parts


class AdditiveWeights(Compressed):
    """Θ = (Θ_1, …, Θ_p): Δ(Θ) = Σ Δ_i(Θ_i); bits add up; realised if every part is."""

    def __init__(
        self, parts: list[Compressed], names: Mapping[str, tuple[torch.Size, torch.dtype]]
    ):
        self.parts = parts
        self._names = dict(names)
        self.realised = all(part.realised for part in parts)

    def decompress(self) -> dict[str, Tensor]:
        total = {
            n: torch.zeros(shape, dtype=torch.float64) for n, (shape, _) in self._names.items()
        }
        for part in self.parts:
            for name, dense in part.decompress().items():
                total[name] = total[name].to(dense.device) + dense.double()
        return {n: total[n].to(dtype) for n, (_, dtype) in self._names.items()}

    def bits(self) -> int:
        return sum(part.bits() for part in self.parts)

    def effective_macs(self, name: str, dense_macs: int) -> int:
        """Each part run on its own, summed, unless merging them into a dense layer is cheaper."""
        return min(dense_macs, sum(part.effective_macs(name, dense_macs) for part in self.parts))


class Additive(Compressor):
    """Sum of built-in compressors, e.g. quantisation + a sparse correction.

    Alternating optimisation: every sweep sets Θ_i = Π_i(w − Σ_{j≠i} Δ_j(Θ_j)) for each
    part in order (starting from all Δ_j = 0); after ``iterations`` sweeps (or once a
    sweep changes nothing) the sweep with the smallest ‖w − Σ Δ_i‖² is returned. Parts
    are built-in compressors named by their tables (see ``parts``). Bits: the sum of the
    parts'; realised when every part is; effective MACs: the sum of the parts', at most
    the dense layer's.
    """

    name = "additive"
    version = "1"
    Options = AdditiveOptions

    def __init__(
        self, options: AdditiveOptions | None = None, *, parts: list[Compressor] | None = None
    ):
        super().__init__(options)
        if parts is None:
            parts = []
            for table in self.options.parts:
                options = {k: v for k, v in table.items() if k != "name"}
                cls = PART_CLASSES[table["name"]]
                parts.append(cls(cls.Options(**options)))
        self.parts = parts

    def with_mu(self, mu: float) -> Additive:
        """A copy whose parts that depend on μ (they have ``with_mu``) use ``mu``."""
        parts = [p.with_mu(mu) if hasattr(p, "with_mu") else p for p in self.parts]
        return type(self)(self.options, parts=parts)

    def compress(self, weights: Mapping[str, Tensor]) -> AdditiveWeights:
        names = {n: (w.shape, w.dtype) for n, w in weights.items()}
        target = {n: w.detach().double() for n, w in weights.items()}
        dense = [{n: torch.zeros_like(t) for n, t in target.items()} for _ in self.parts]
        thetas: list[Compressed | None] = [None] * len(self.parts)
        best: tuple[float, list[Compressed]] | None = None
        for _ in range(self.options.iterations):
            changed = False
            for i, part in enumerate(self.parts):
                residual = {
                    n: (target[n] - sum(d[n] for j, d in enumerate(dense) if j != i)).to(
                        weights[n].dtype
                    )
                    for n in target
                }
                thetas[i] = part.compress(residual)
                new = {n: t.double() for n, t in thetas[i].decompress().items()}
                changed |= any(not torch.equal(new[n], dense[i][n]) for n in new)
                dense[i] = new
            error = sum(float(((target[n] - sum(d[n] for d in dense)) ** 2).sum()) for n in target)
            if best is None or error < best[0]:
                best = (error, list(thetas))
            if not changed:
                break
        assert best is not None
        return AdditiveWeights(best[1], names)
