"""M models of one architecture as one module with stacked parameters.

Layout inside the fused forward pass:

* convolution phase: ``(B, M·C, H, W)`` — member ``i`` owns channels ``[i·C, (i+1)·C)``;
  a member's ``Conv2d`` becomes one grouped convolution over all members;
* fully connected phase: ``(M, B, F)``; a member's ``Linear`` becomes one ``baddbmm``;
* activations and pooling act per channel or elementwise, so one shared module serves
  every member;
* in the channels-last layout on CPU, a 2×2 max-pool next to a ReLU (and the first
  convolution before them) runs as one kernel (:mod:`~benchharness.grouped.conv_pool`).

Every fused parameter is stacked member-major along dimension 0 (its first
``shape[0] // M`` rows belong to member 0, the next to member 1, ...), which is what
:class:`~benchharness.grouped.optimizer.FusedSGD` relies on for per-member settings.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchharness.grouped.chain import Step, chain_of, check_fusible
from benchharness.grouped.conv_pool import Fusion, conv_relu_pool, plan_of, pool_relu

__all__ = ["FusedNet", "fuse", "unfuse"]


class FusedNet(nn.Module):
    """Members of one chain architecture trained as one module (see the module doc).

    ``forward`` takes ``(M, B, *input_shape)`` — member ``i``'s batch at index ``i`` —
    and returns logits ``(M, B, classes)``. Build it with :func:`fuse`.
    """

    def __init__(self, models: Sequence[nn.Module]):
        super().__init__()
        check_fusible(models)
        self.members = len(models)
        self.channels_last = False  # set by use_channels_last()
        # The architecture for unfuse, held in a tuple so that it is not a submodule (its
        # weights are not parameters of the fused model).
        self._template = (copy.deepcopy(models[0]).cpu(),)
        self.steps: list[Step] = chain_of(self._template[0])
        self._order: list[Step] | None = None
        self._fusions: dict[int, Fusion] = plan_of(self.order)
        self.stacked = nn.ParameterDict()
        # member parameter name -> (fused key, how to stack)
        self.origin: dict[str, tuple[str, str]] = {}
        self.shared = nn.ModuleDict()
        for step in self.steps:
            key = (step.name or "flatten").replace(".", "_")
            if step.kind == "shared":
                self.shared[key] = copy.deepcopy(step.module)
            if step.kind not in ("conv", "linear"):
                continue
            for pname in ("weight", "bias"):
                if getattr(step.module, pname) is None:
                    continue
                full = f"{step.name}.{pname}"
                tensors = [dict(m.named_parameters())[full].detach() for m in models]
                how = step.kind if pname == "weight" else f"{step.kind}_bias"
                self.stacked[f"{key}__{pname}"] = nn.Parameter(_stack(tensors, how))
                self.origin[full] = (f"{key}__{pname}", how)

    @property
    def order(self) -> list[Step]:
        """The steps as the fused forward runs them: ``steps``, except that a ReLU
        followed by a max-pool runs after it. max(relu(x)) = relu(max(x)) exactly, with the
        same gradients (ReLU is non-decreasing, and ties it creates are at 0, where its
        gradient is 0), and the ReLU then touches a quarter of the values — on M members'
        activations, which no longer fit the caches, that is a large part of a step."""
        if self._order is None:
            order = list(self.steps)
            for i in range(len(order) - 1):
                a, b = order[i], order[i + 1]
                if isinstance(a.module, nn.ReLU) and isinstance(b.module, nn.MaxPool2d):
                    order[i], order[i + 1] = b, a
            self._order = order
        return self._order

    def use_channels_last(self, enabled: bool = True) -> FusedNet:
        """Hold convolution weights and activations channels-last (NHWC), which makes
        grouped convolutions faster on CPUs; the values computed are the same."""
        fmt = torch.channels_last if enabled else torch.contiguous_format
        for param in self.stacked.values():
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=fmt)
        self.channels_last = enabled
        return self

    def forward(self, x: Tensor) -> Tensor:
        m = x.shape[0]
        conv_phase = self.order[0].kind == "conv"
        if conv_phase:
            x = _to_conv_layout(x, self.channels_last)
        skip_to = 0
        for index, step in enumerate(self.order):
            if index < skip_to:
                continue
            fused = self._fused(index, x, m) if self.channels_last else None
            if fused is not None:
                x, skip_to = fused, index + self._fusions[index].length
                continue
            key = (step.name or "flatten").replace(".", "_")
            if step.kind == "conv":
                x = _grouped_conv(x, step.module, self.stacked, key, m)
            elif step.kind == "linear":
                weight = self.stacked[f"{key}__weight"]
                bias = self.stacked.get(f"{key}__bias")
                w = weight.transpose(1, 2)
                x = torch.baddbmm(bias, x, w) if bias is not None else torch.bmm(x, w)
            elif step.kind == "flatten":
                if conv_phase:
                    x = _to_linear_layout(x, m)
                    conv_phase = False
                else:
                    x = x.flatten(2)
            else:
                x = self.shared[key](x)
        return x

    def _fused(self, index: int, x: Tensor, m: int) -> Tensor | None:
        """The output of the fusion starting at step ``index``, or ``None`` (no fusion
        there, or its kernel does not apply to ``x``: the steps then run one by one)."""
        fusion = self._fusions.get(index)
        if fusion is None:
            return None
        if fusion.kind == "pool_relu":
            return pool_relu(x)
        step = self.order[index]
        key = step.name.replace(".", "_")
        weight, bias = self.stacked[f"{key}__weight"], self.stacked.get(f"{key}__bias")
        return conv_relu_pool(x, weight, bias, step.module, m)


def _to_conv_layout(x: Tensor, channels_last: bool) -> Tensor:
    """``(M, B, C, H, W)`` as ``(B, M·C, H, W)``, in one copy (channels-last: memory
    ``(B, H, W, M, C)``, so no second copy converts it)."""
    m, b, c, h, w = x.shape
    if not channels_last:
        return x.transpose(0, 1).reshape(b, m * c, h, w)
    nhwc = x.permute(1, 3, 4, 0, 2).contiguous().view(b, h, w, m * c)
    return nhwc.permute(0, 3, 1, 2)


def _to_linear_layout(x: Tensor, m: int) -> Tensor:
    """``(B, M·C, H, W)`` as ``(M, B, C·H·W)``, each member's features in
    ``torch.flatten``'s order: a view of a contiguous input, one copy (contiguous) of a
    channels-last one."""
    b, mc, h, w = x.shape
    return x.view(b, m, mc // m, h, w).permute(1, 0, 2, 3, 4).reshape(m, b, -1)


def _stack(tensors: list[Tensor], how: str) -> Tensor:
    if how == "conv" or how == "conv_bias":
        return torch.cat(tensors, dim=0).clone()  # (M·Cout, Cin/g, kh, kw) / (M·Cout,)
    if how == "linear":
        return torch.stack(tensors).clone()  # (M, out, in)
    return torch.stack(tensors).unsqueeze(1).clone()  # linear bias: (M, 1, out)


def _grouped_conv(x: Tensor, conv: nn.Conv2d, stacked: nn.ParameterDict, key: str, m: int):
    bias = stacked.get(f"{key}__bias")
    return F.conv2d(
        x,
        stacked[f"{key}__weight"],
        bias,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups * m,
    )


def fuse(models: Sequence[nn.Module]) -> FusedNet:
    """One :class:`FusedNet` holding copies of ``models``' parameters, on their device.

    ``models`` must pass :func:`~benchharness.grouped.chain.fusible_reason` (else
    :class:`~benchharness.errors.BenchError`). The models are not modified, and the
    fused module shares no storage with them. For every member ``i`` and input batch
    ``x`` of it, ``fuse(models)(X)[i]`` equals ``models[i](x)`` up to floating-point
    rounding when ``X[i] = x``.
    """
    return FusedNet(models)


def unfuse(fused: FusedNet) -> list[nn.Module]:
    """The members of ``fused`` as ordinary models (the original class and layer names)
    holding copies of its current parameter values, in member order, on its device and
    in the members' original parameter layout (contiguous). Member ``i``'s output equals
    ``fused(X)[i]`` up to floating-point rounding."""
    models = []
    device = next(fused.parameters()).device
    for i in range(fused.members):
        model = copy.deepcopy(fused._template[0]).to(device)
        with torch.no_grad():
            for name, param in model.named_parameters():
                key, how = fused.origin[name]
                param.copy_(member_slice(fused.stacked[key], i, fused.members, how))
        models.append(model)
    return models


def member_slice(stacked: Tensor, index: int, members: int, how: str) -> Tensor:
    """Member ``index``'s part of a stacked parameter, in the member's own shape."""
    if how.startswith("conv"):
        rows = stacked.shape[0] // members
        return stacked[index * rows : (index + 1) * rows]
    if how == "linear":
        return stacked[index]
    return stacked[index, 0]
