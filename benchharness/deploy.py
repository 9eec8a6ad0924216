"""The deployable model: Δ(Θ) run from Θ's stored form, for an honest latency.

The harness evaluates a compressed model as the dense Δ(Θ) loaded into the original
architecture, so its ``latency_*`` cannot show a speed-up. Where a ``Compressed`` says how
its stored form runs (:meth:`benchharness.api.Compressed.deploy`), :func:`deployable_model`
builds a copy of the model with each such layer replaced by that form, and the harness
stores its latency as ``latency_deployed_*``.

The building blocks the built-in compressors use, public for plugins: :func:`factored`
(two factor layers), :class:`SparseLinear` and :class:`SparseConv2d` (a torch sparse CSR
weight), :class:`KeptRows` (a smaller layer computing only the kept output rows).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchharness.api import Compressed
from benchharness.errors import BenchError

__all__ = [
    "KeptRows",
    "SparseConv2d",
    "SparseLinear",
    "check_outputs",
    "deployable_model",
    "factored",
    "kept_rows",
    "sparse",
]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def deployable_model(model: nn.Module, parts: Iterable[Compressed]) -> nn.Module | None:
    """A deep copy of ``model`` (holding Δ(Θ)) whose compressed layers are replaced by
    their deployable forms (``part.deploy(name, layer)``), or ``None`` when no part
    provides one for any layer. ``model`` is left untouched; the copy is in eval mode."""
    parts = list(parts)
    if not parts:
        return None
    deployed = copy.deepcopy(model)
    modules = dict(deployed.named_modules())
    replaced = False
    for part in parts:
        for name in part.decompress():
            owner, _, leaf = name.rpartition(".")
            layer = modules.get(owner)
            if leaf != "weight" or layer is None:
                continue
            form = part.deploy(name, layer)
            if form is None:
                continue
            if not isinstance(form, nn.Module):
                raise BenchError(
                    f"{type(part).__name__}.deploy({name!r}) returned "
                    f"{type(form).__name__}, not an nn.Module or None"
                )
            if owner:
                parent, _, child = owner.rpartition(".")
                setattr(deployed.get_submodule(parent), child, form)
            else:
                deployed = form
            modules[owner] = form
            replaced = True
    return deployed.eval() if replaced else None


@torch.inference_mode()
def check_outputs(
    model: nn.Module, deployed: nn.Module, x: Tensor, *, tol: float | None = None
) -> None:
    """Raise :class:`BenchError` unless ``deployed`` computes ``model``'s outputs on ``x``
    within ``tol`` relative to the largest output magnitude (at least 1): the sums run in
    another order. Default 1e-4 on the CPU, 1e-2 on a GPU (TF32 convolutions)."""
    if tol is None:
        tol = 1e-4 if x.device.type == "cpu" else 1e-2
    was_training = model.training
    model.eval()
    try:
        expected, got = model(x), deployed(x)
    finally:
        model.train(was_training)
    if got.shape != expected.shape:
        raise BenchError(
            "the deployable model (Compressed.deploy) does not compute the evaluated "
            f"model's outputs: shape {tuple(got.shape)} instead of {tuple(expected.shape)}"
        )
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    error = float((expected - got).abs().max()) if expected.numel() else 0.0
    if not error <= tol * max(scale, 1.0):
        raise BenchError(
            "the deployable model (Compressed.deploy) does not compute the evaluated "
            f"model's outputs: max |difference| {error:.3g} for outputs up to {scale:.3g}"
        )


# ------------------------------------------------------------------ building blocks
def _like(module: nn.Module, built: nn.Module) -> nn.Module:
    weight = module.weight
    return built.to(device=weight.device, dtype=weight.dtype)


def _plain_conv(module: nn.Module) -> bool:
    """A conv of one group with numeric padding (not 'same'/'valid')."""
    return isinstance(module, _CONV) and module.groups == 1 and not isinstance(module.padding, str)


def factored(module: nn.Module, us: Tensor, v: Tensor) -> nn.Module | None:
    """``module`` (Linear or Conv, groups 1) with weight ``us @ v.T`` (lowered to
    ``(out, in·k…)``) as two layers: ``in → r`` with V, then ``r → out`` with U·S and the
    bias. A conv's first layer keeps the kernel, stride, padding and dilation; its second
    is 1×1. ``None`` for other modules and for rank 0."""
    rank = us.shape[1]
    if rank == 0:
        return None
    bias = module.bias is not None
    if isinstance(module, nn.Linear):
        first = nn.Linear(module.in_features, rank, bias=False)
        second = nn.Linear(rank, module.out_features, bias=bias)
        first.weight.data = v.T.contiguous().clone()
        second.weight.data = us.contiguous().clone()
    elif isinstance(module, _CONV) and module.groups == 1:
        first = _conv_like(module, rank, bias=False)
        second = type(module)(rank, module.out_channels, 1, bias=bias)
        first.weight.data = v.T.reshape(rank, *module.weight.shape[1:]).clone()
        second.weight.data = us.reshape(*us.shape, *(1,) * (module.weight.dim() - 2)).clone()
    else:
        return None
    if bias:
        second.bias.data = module.bias.detach().clone()
    return _like(module, nn.Sequential(first, second))


def _csr(matrix: Tensor) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        return matrix.detach().to_sparse_csr()


class SparseLinear(nn.Module):
    """A Linear layer whose ``(out, in)`` weight is a torch sparse CSR tensor:
    ``y = (W x)ᵀ + b`` with ``torch.sparse.mm``."""

    def __init__(self, weight: Tensor, bias: Tensor | None):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.register_buffer("weight", _csr(weight))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, self.in_features)
        y = torch.sparse.mm(self.weight, flat.T).T
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features)


class SparseConv2d(nn.Module):
    """A Conv2d (groups 1, zero padding) whose lowered ``(out, in·kh·kw)`` weight is a
    sparse CSR tensor: the input is unfolded into patches (im2col) and multiplied with
    ``torch.sparse.mm``."""

    def __init__(self, conv: nn.Conv2d, weight: Tensor):
        super().__init__()
        self.out_channels = conv.out_channels
        self.kernel_size, self.stride = conv.kernel_size, conv.stride
        self.padding, self.dilation = conv.padding, conv.dilation
        self.register_buffer("weight", _csr(weight.reshape(conv.out_channels, -1)))
        bias = None if conv.bias is None else conv.bias.detach().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        out_h, out_w = (
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip(
                (height, width),
                self.padding,
                self.dilation,
                self.kernel_size,
                self.stride,
                strict=True,
            )
        )
        patches = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        columns = patches.transpose(0, 1).reshape(patches.shape[1], -1)  # (in·k, B·L)
        y = torch.sparse.mm(self.weight, columns)  # (out, B·L)
        if self.bias is not None:
            y = y + self.bias.unsqueeze(1)
        return y.view(self.out_channels, batch, out_h, out_w).transpose(0, 1)


def sparse(module: nn.Module, weight: Tensor) -> nn.Module | None:
    """``module`` with ``weight`` (dense, mostly zeros) held as a sparse CSR tensor:
    :class:`SparseLinear` or :class:`SparseConv2d`; ``None`` for other modules."""
    if isinstance(module, nn.Linear):
        built: nn.Module = SparseLinear(weight, module.bias)
    elif isinstance(module, nn.Conv2d) and _plain_conv(module) and module.padding_mode == "zeros":
        built = SparseConv2d(module, weight)
    else:
        return None
    return _like(module, built)


class KeptRows(nn.Module):
    """A layer of which only some output rows (neurons, filters) are nonzero: ``small``
    computes the kept ones, which are scattered into an output holding the bias (what a
    removed row outputs) elsewhere. ``dim`` is the feature dimension of the output
    (-1 for Linear, 1 for Conv)."""

    def __init__(self, small: nn.Module, kept: Tensor, bias: Tensor | None, rows: int, dim: int):
        super().__init__()
        self.small, self.rows, self.dim = small, rows, dim
        self.register_buffer("index", torch.nonzero(kept.reshape(-1)).squeeze(1))
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        kept = self.small(x)
        dim = self.dim % kept.dim()
        shape = list(kept.shape)
        shape[dim] = self.rows
        if self.bias is None:
            out = kept.new_zeros(shape)
        else:
            view = [1] * kept.dim()
            view[dim] = self.rows
            out = self.bias.view(view).expand(shape).clone()
        return out.index_copy_(dim, self.index, kept)


def kept_rows(module: nn.Module, kept: Tensor, rows: Tensor) -> nn.Module | None:
    """``module`` of which only the ``kept`` (bool, one per output row) rows are nonzero,
    with values ``rows`` (``(kept, in·k…)``), as a :class:`KeptRows` over a smaller layer
    of the same kind; ``None`` for other modules."""
    count = int(kept.sum())
    if count == 0:
        return None
    bias = module.bias
    if isinstance(module, nn.Linear):
        small: nn.Module = nn.Linear(module.in_features, count, bias=bias is not None)
        dim = -1
    elif isinstance(module, _CONV) and module.groups == 1:
        small = _conv_like(module, count, bias=bias is not None)
        dim = 1
    else:
        return None
    small.weight.data = rows.reshape(count, *module.weight.shape[1:]).clone()
    if bias is not None:
        small.bias.data = bias.detach()[kept].clone()
    return _like(module, KeptRows(small, kept, bias, module.weight.shape[0], dim))


def _conv_like(module: nn.Module, out_channels: int, *, bias: bool) -> nn.Module:
    """A conv of ``module``'s kind, inputs, kernel, stride, padding and dilation with
    ``out_channels`` outputs."""
    return type(module)(
        module.in_channels,
        out_channels,
        module.kernel_size,
        stride=module.stride,
        padding=module.padding,
        dilation=module.dilation,
        bias=bias,
        padding_mode=module.padding_mode,
    )
