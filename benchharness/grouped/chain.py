"""A member model read as a chain of layers, and whether several members can be fused.

The fused engine handles models whose forward pass is a straight chain (each step
feeding only the next) of ``Conv2d``, ``Linear``, ``ReLU``, ``Tanh``, ``MaxPool2d``,
``AvgPool2d``, ``Flatten`` / ``torch.flatten(x, 1)``: the built-in CompressedNet,
LeNet5 and LeNet300. The chain is read with ``torch.fx``, so a new model of that shape
is fusible without code here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import fx, nn

from benchharness.errors import BenchError

__all__ = ["Step", "chain_of", "check_fusible", "fusible_reason"]

_SHARED = (nn.ReLU, nn.Tanh, nn.MaxPool2d, nn.AvgPool2d)


@dataclasses.dataclass(frozen=True)
class Step:
    """One layer of a chain: ``kind`` is ``conv``, ``linear``, ``flatten`` or ``shared``
    (a parameter-free module applied elementwise or per channel); ``name`` is the
    member's module name (``None`` for ``torch.flatten``)."""

    kind: str
    name: str | None
    module: nn.Module | None


def chain_of(model: nn.Module) -> list[Step]:
    """The layers of ``model`` in forward order.

    Raises :class:`BenchError` (one line) when the forward pass is not a straight chain
    of supported layers, e.g. a residual connection, dropout or batch norm.
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable code
        raise BenchError(f"grouped: cannot trace {type(model).__name__} ({exc})") from None
    modules = dict(model.named_modules())
    steps: list[Step] = []
    previous = None
    for node in graph.nodes:
        if node.op == "placeholder":
            previous = node
            continue
        if node.op == "output":
            if node.args[0] is not previous:
                raise BenchError("grouped: the model's output is not the end of its chain")
            break
        if len(node.all_input_nodes) != 1 or node.all_input_nodes[0] is not previous:
            raise BenchError(f"grouped: {node.name} is not a straight chain step")
        steps.append(_step(node, modules))
        previous = node
    if not any(s.kind in ("conv", "linear") for s in steps):
        raise BenchError("grouped: the model has no Conv2d or Linear layer")
    _check_phases(steps)
    return steps


def _check_phases(steps: list[Step]) -> None:
    """Convolutions and pooling only on images, linear layers only on flat features."""
    images = steps[0].kind == "conv"  # as FusedNet.forward lays its input out
    for step in steps:
        pooling = isinstance(step.module, nn.MaxPool2d | nn.AvgPool2d)
        if step.kind == "flatten":
            images = False
        elif images and step.kind == "linear":
            raise BenchError(f"grouped: {step.name} is a Linear layer before the flatten")
        elif not images and (step.kind == "conv" or pooling):
            raise BenchError(f"grouped: {step.name} works on images after the flatten")


def _step(node: fx.Node, modules: dict[str, nn.Module]) -> Step:
    if node.op == "call_function" and node.target is torch.flatten:
        if tuple(node.args[1:]) != (1,) or node.kwargs:
            raise BenchError("grouped: only torch.flatten(x, 1) is supported")
        return Step("flatten", None, None)
    if node.op != "call_module":
        raise BenchError(f"grouped: unsupported operation {node.op} {node.target}")
    name = str(node.target)
    module = modules[name]
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise BenchError(f"grouped: {name} uses padding_mode {module.padding_mode!r}")
        return Step("conv", name, module)
    if isinstance(module, nn.Linear):
        return Step("linear", name, module)
    if isinstance(module, nn.Flatten):
        if (module.start_dim, module.end_dim) != (1, -1):
            raise BenchError(f"grouped: {name} must flatten from dimension 1")
        return Step("flatten", name, module)
    if isinstance(module, _SHARED):
        return Step("shared", name, module)
    raise BenchError(f"grouped: unsupported layer {name} ({type(module).__name__})")


def _signature(model: nn.Module) -> list[tuple]:
    signature: list[tuple] = []
    for step in chain_of(model):
        module = step.module
        if step.kind == "shared":
            signature.append((step.name, repr(module)))
        else:
            signature.append((step.kind, step.name, repr(module)))
    shapes = [(n, tuple(p.shape), p.dtype, p.device) for n, p in model.named_parameters()]
    buffers = [n for n, _ in model.named_buffers()]
    return [*signature, ("parameters", tuple(shapes)), ("buffers", tuple(buffers))]


def fusible_reason(models: Sequence[nn.Module]) -> str | None:
    """``None`` when ``models`` can be trained as one fused model, else why not (one line).

    Fusible means: at least one model; each a supported chain (see :func:`chain_of`);
    all of the same class with the same layers (same ``repr`` of every layer, hence the
    same channel counts, kernel sizes, strides, padding, activations) and the same
    parameter names, shapes, dtypes and devices; no buffers. Initial values, and
    everything outside the models (seed, learning rate, weight decay, data), may differ.
    """
    if not models:
        return "no models to fuse"
    try:
        first = _signature(models[0])
        for index, model in enumerate(models[1:], start=1):
            if type(model) is not type(models[0]):
                return (
                    f"model {index} is a {type(model).__name__}, "
                    f"model 0 a {type(models[0]).__name__}"
                )
            other = _signature(model)
            if len(other) != len(first):
                return f"model {index} has a different number of layers"
            for mine, theirs in zip(first, other, strict=True):
                if mine != theirs:
                    return f"model {index} differs from model 0: {theirs} vs {mine}"
    except BenchError as exc:
        return str(exc)
    if first[-1][1]:
        return "models with buffers (e.g. batch norm) are not supported"
    return None


def check_fusible(models: Sequence[nn.Module]) -> None:
    """Raise :class:`BenchError` with :func:`fusible_reason`'s line unless fusible."""
    reason = fusible_reason(models)
    if reason is not None:
        raise BenchError(f"grouped: cannot fuse: {reason}")
