"""Additive combinations: w ≈ Σ_i Δ_i(Θ_i), e.g. quantisation plus a sparse correction."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from benchharness import (
    BenchError,
    Compressed,
    Compressor,
    CompressorOptions,
    PluginTable,
    build_plugin,
)

if TYPE_CHECKING:
    import torch
    from torch import Tensor


def _part(index: int, table: Any, info: ValidationInfo | None) -> Compressor:
    """Part ``index`` built through the plugin registry; ValueError (one line) if invalid."""
    if not isinstance(table, dict) or not isinstance(table.get("name"), str):
        raise ValueError(f"parts[{index}]: must be a compressor table with a `name`")
    name = table["name"]
    if "layers" in table:
        raise ValueError(f"parts[{index}] ({name}): 'layers' is set on the additive compressor")
    try:
        part = build_plugin("compressor", table, info)
    except BenchError as error:
        detail = str(error).removeprefix(f"{Compressor.kind} '{name}': ")
        raise ValueError(f"parts[{index}] ({name}): {detail}") from None
    if part.data_aware or type(part).compress is Compressor.compress:
        raise ValueError(
            f"parts[{index}] ({name}): a part must be a data-free compressor (one that "
            "implements compress(weights)); {name} is data-aware"
        )
    if name == "additive":
        raise ValueError(f"parts[{index}]: an additive part cannot itself be additive")
    return part


class AdditiveOptions(CompressorOptions):
    parts: Annotated[list[dict[str, Any]], PluginTable("compressor", many=True)] = Field(
        min_length=2,
        description="two or more compressor tables, each {name = ..., options...} naming a "
        "registered data-free compressor (built-in or from an installed plugin), e.g. "
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
    warm_start: bool = Field(
        default=True,
        description="when called again on weights of the same names and shapes (the next "
        "C step of LC or iDC), also run the alternation from the previous call's parts "
        "and keep the better of that and the cold start from zeros",
    )
    _compressors: list[Compressor] = PrivateAttr(default_factory=list)

    @field_validator("parts")
    @classmethod
    def _valid_parts(
        cls, parts: list[dict[str, Any]], info: ValidationInfo
    ) -> list[dict[str, Any]]:
        for i, table in enumerate(parts):
            _part(i, table, info)
        return parts

    @model_validator(mode="after")
    def _build_parts(self, info: ValidationInfo) -> AdditiveOptions:
        self._compressors = [_part(i, t, info) for i, t in enumerate(self.parts)]
        return self


class AdditiveWeights(Compressed):
    """Θ = (Θ_1, …, Θ_p): Δ(Θ) = Σ Δ_i(Θ_i); bits add up; realised if every part is."""

    def __init__(
        self, parts: list[Compressed], names: Mapping[str, tuple[torch.Size, torch.dtype]]
    ):
        self.parts = parts
        self._names = dict(names)
        self.realised = all(part.realised for part in parts)

    def decompress(self) -> dict[str, Tensor]:
        import torch

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


@dataclasses.dataclass
class _WarmStart:
    """What an additive compressor and its ``with_mu`` copies share across calls: the
    chosen parts Δ_i(Θ_i) of the last call, for the weights (names, shapes) it had."""

    shapes: dict[str, torch.Size] = dataclasses.field(default_factory=dict)
    dense: list[dict[str, Tensor]] = dataclasses.field(default_factory=list)


class Additive(Compressor):
    """Sum of compressors, e.g. quantisation + a sparse correction.

    Alternating optimisation: every sweep sets Θ_i = Π_i(w − Σ_{j≠i} Δ_j(Θ_j)) for each
    part in order; after ``iterations`` sweeps (or once a sweep changes nothing) the
    sweep with the smallest ‖w − Σ Δ_i‖² is returned. The first call starts from all
    Δ_j = 0. Warm start (``warm_start``): a later call on weights with the same names and
    shapes (the next C step of LC or iDC; ``with_mu`` copies share this memory) runs the
    alternation twice, from the previous call's chosen Δ_j with the live parts (so a
    ``quantize`` part also warm-starts from its own previous codebooks) and from zeros
    with untouched copies of the parts as first built, and keeps the smaller error (the
    warm one on ties): never worse than a fresh compressor on the same weights. Parts are
    data-free compressors named by their tables and built through the plugin registry,
    so a third-party compressor can be a part (see ``parts``). Bits: the sum of the
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
        # the built parts stay unused: the cold start of later calls copies them
        self._pristine = list(self.options._compressors)
        self.parts = parts if parts is not None else [copy.deepcopy(p) for p in self._pristine]
        self._mu: float | None = None
        self._warm = _WarmStart()

    def with_mu(self, mu: float) -> Additive:
        """A copy whose parts that depend on μ (they have ``with_mu``) use ``mu``; it
        shares this compressor's warm-start memory (and parts without μ, e.g. quantize)."""
        moved = type(self)(self.options, parts=[p.with_mu(mu) for p in self.parts])
        moved.layer_macs = self.layer_macs
        moved._pristine = self._pristine
        moved._mu = mu
        moved._warm = self._warm
        return moved

    def compress(self, weights: Mapping[str, Tensor]) -> AdditiveWeights:
        names = {n: (w.shape, w.dtype) for n, w in weights.items()}
        target = {n: w.detach().double() for n, w in weights.items()}
        dtypes = {n: w.dtype for n, w in weights.items()}
        shapes = {n: w.shape for n, w in weights.items()}
        warm = self._warm
        if self.options.warm_start and warm.dense and warm.shapes == shapes:
            fresh = [copy.deepcopy(p) for p in self._pristine]
            if self._mu is not None:
                fresh = [p.with_mu(self._mu) for p in fresh]
            best = self._alternate(self.parts, target, dtypes, warm.dense)
            cold = self._alternate(fresh, target, dtypes, None)
            if cold[0] < best[0]:
                best = cold
        else:
            best = self._alternate(self.parts, target, dtypes, None)
        _, thetas, dense = best
        warm.shapes, warm.dense = shapes, dense
        return AdditiveWeights(thetas, names)

    def _alternate(
        self,
        parts: list[Compressor],
        target: dict[str, Tensor],
        dtypes: dict[str, torch.dtype],
        start: list[dict[str, Tensor]] | None,
    ) -> tuple[float, list[Compressed], list[dict[str, Tensor]]]:
        """The alternation from Δ_j = ``start`` (zeros if None): (error, Θ, Δ) of its best
        sweep."""
        import torch

        if start is None:
            dense = [{n: torch.zeros_like(t) for n, t in target.items()} for _ in parts]
        else:
            dense = [{n: d[n].to(target[n].device) for n in target} for d in start]
        thetas: list[Compressed | None] = [None] * len(parts)
        best: tuple[float, list[Compressed], list[dict[str, Tensor]]] | None = None
        for _ in range(self.options.iterations):
            changed = False
            for i, part in enumerate(parts):
                part.layer_macs = self.layer_macs
                residual = {
                    n: (target[n] - sum(d[n] for j, d in enumerate(dense) if j != i)).to(dtypes[n])
                    for n in target
                }
                thetas[i] = part.compress(residual)
                new = {n: t.double() for n, t in thetas[i].decompress().items()}
                changed |= any(not torch.equal(new[n], dense[i][n]) for n in new)
                dense[i] = new
            error = sum(float(((target[n] - sum(d[n] for d in dense)) ** 2).sum()) for n in target)
            if best is None or error < best[0]:
                best = (error, list(thetas), list(dense))
            if not changed:
                break
        assert best is not None
        return best
