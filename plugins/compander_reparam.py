"""The weight compander's reparameterisation w = Ψ(v) = a·arctan(v/b) (Cakaj, Mehnert and
Yang, "Weight Compander", ../shared/papers/weight-compander.md, eq. 1 and 4).

Every Linear and Conv weight (not biases, not normalisation layers) becomes Ψ(v) through
``torch.nn.utils.parametrize``: the layer's ``weight`` is computed from the trained
tensor v (``module.parametrizations.weight.original``) on every access, and
``v0 = b·tan(w0/a)`` so that Ψ(v0) is the model's own initialisation. (a, b) live in a
:class:`Scale`: fixed buffers, or learnable parameters shared by all layers ("coarse")
or one pair per layer ("fine"). :func:`export` replaces Ψ(v) by its value: the model is
then an ordinary network with plain weights.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from benchharness import BenchError

__all__ = ["Arctan", "Companded", "Scale", "compand", "export", "psi", "psi_inverse", "psi_prime"]


def psi(v: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Ψ(v) = a·arctan(v/b)."""
    return a * torch.atan(v / b)


def psi_inverse(w: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Ψ⁻¹(w) = b·tan(w/a), defined for |w| < aπ/2."""
    return b * torch.tan(w / a)


def psi_prime(v: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Ψ′(v) = a / (b·(1 + v²/b²)) (the paper's eq. 3)."""
    return a / (b * (1 + (v / b) ** 2))


class Scale(nn.Module):
    """(a, b) of Ψ: learnable parameters, or buffers when fixed."""

    def __init__(self, a: float, b: float, *, learnable: bool, device: torch.device | None = None):
        super().__init__()
        for name, value in (("a", a), ("b", b)):
            tensor = torch.tensor(float(value), device=device)
            if learnable:
                self.register_parameter(name, nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    a: Tensor
    b: Tensor


class Arctan(nn.Module):
    """The parametrization w = Ψ(v) with the (a, b) of ``scale``."""

    def __init__(self, scale: Scale):
        super().__init__()
        self.scale = scale

    def forward(self, v: Tensor) -> Tensor:
        return psi(v, self.scale.a, self.scale.b)

    def right_inverse(self, w: Tensor) -> Tensor:
        with torch.no_grad():
            return psi_inverse(w, self.scale.a, self.scale.b)


@dataclasses.dataclass(frozen=True)
class Companded:
    """One reparameterised layer: its module name, the module and its (a, b)."""

    name: str
    module: nn.Module
    scale: Scale

    @property
    def v(self) -> nn.Parameter:
        """The trained tensor v (the parametrization's ``original``)."""
        return self.module.parametrizations.weight.original  # type: ignore[union-attr]


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    kinds = (nn.Linear, nn.modules.conv._ConvNd)
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, kinds) and isinstance(getattr(module, "weight", None), Tensor)
    ]


def compand(
    model: nn.Module, *, a: float, b: float, per_layer: bool, learnable: bool
) -> list[Companded]:
    """Reparameterise every Linear/Conv weight of ``model`` in place as Ψ(v), Ψ(v0) = w0.

    ``per_layer``: one (a, b) per layer, else one pair shared by all layers; ``learnable``:
    (a, b) are parameters of the model, else buffers. Raises :class:`BenchError` naming
    the layer when a weight is not inside Ψ's range (|w0| < aπ/2), checked for every layer
    before any is changed.
    """
    layers = _layers(model)
    if not layers:
        raise BenchError("compander: the model has no Linear or Conv layer to reparameterise")
    bound = a * math.pi / 2
    for name, module in layers:
        if parametrize.is_parametrized(module, "weight"):
            raise BenchError(f"compander: {name}.weight is already parametrized")
        largest = float(module.weight.detach().abs().max())
        if not largest < bound:
            raise BenchError(
                f"compander: {name}.weight has |w| up to {largest:.4g}, outside Ψ's range "
                f"|w| < aπ/2 = {bound:.4g} (a = {a:g}); use a larger a"
            )
    device = layers[0][1].weight.device
    shared = Scale(a, b, learnable=learnable, device=device)
    companded = []
    for name, module in layers:
        scale = Scale(a, b, learnable=learnable, device=device) if per_layer else shared
        parametrize.register_parametrization(module, "weight", Arctan(scale))
        companded.append(Companded(name, module, scale))
    return companded


def export(companded: list[Companded]) -> None:
    """Replace each Ψ(v) by its value: plain ``weight`` parameters, no (a, b) left."""
    for layer in companded:
        parametrize.remove_parametrizations(layer.module, "weight", leave_parametrized=True)
