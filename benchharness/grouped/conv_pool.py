"""Fast paths for "max-pool 2×2 with a ReLU" in the fused model, on CPU kernels.

A fused CompressedNet step spends much of its time outside the convolutions' arithmetic:
torch's max-pool writes int64 indices (twice the bytes of its float input) and its
backward zero-fills the whole input gradient before scattering into it; the first
convolution (one input channel per member) runs a slow grouped kernel and writes a
full-resolution activation only for the pool to read it back. Two kernels
(``cpu_kernels.cpp``) remove that traffic:

* :func:`conv_relu_pool`: first layer → ReLU → 2×2 max-pool in one pass per image,
  per member with its own weights. It never stores the full-resolution activation;
  the backward gathers the inputs that each surviving output saw straight into the
  weight gradient. Only for an input that needs no gradient (the batch itself).
* :func:`pool_relu`: 2×2 max-pool and ReLU of a channels-last activation, with one-byte
  indices and a backward that writes each input gradient once.

Both compute what the layers compute (the same values; the same gradients up to float
rounding, with torch's tie rule: the first maximum of a window in row-major order wins),
and each returns ``None`` when its conditions do not hold (a CUDA tensor, an unsupported
dtype or layout, kernels turned off or not buildable): the caller then runs torch's
layers. :func:`plan_of` decides once, from a chain's layers, where they apply.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchharness.grouped.chain import Step
from benchharness.grouped.cpu_kernels import cpu_kernels

__all__ = ["Fusion", "conv_relu_pool", "plan_of", "pool_relu"]

#: the kernel computes output channels in blocks of this many (kBlock in the C++ source)
_CHANNEL_BLOCK = 8


@dataclasses.dataclass(frozen=True)
class Fusion:
    """``length`` steps of a chain (from the step :func:`plan_of` keys it by) run as one
    kernel: ``kind`` is ``conv_relu_pool`` (a convolution, then a ReLU and a 2×2
    max-pool in either order) or ``pool_relu`` (a 2×2 max-pool and a ReLU, in either
    order)."""

    kind: str
    length: int


def plan_of(steps: list[Step]) -> dict[int, Fusion]:
    """The fusions for a chain's steps, keyed by their first step's index.

    ``conv_relu_pool`` applies only to the chain's first step (whose input is the data);
    ``pool_relu`` to any other max-pool adjacent to a ReLU.
    """
    plan: dict[int, Fusion] = {}
    i = 0
    while i < len(steps):
        if i == 0 and _first_conv_fits(steps[0]) and _relu_and_pool(steps[1:3]):
            plan[0] = Fusion("conv_relu_pool", 3)
            i = 3
        elif _relu_and_pool(steps[i : i + 2]):
            plan[i] = Fusion("pool_relu", 2)
            i += 2
        else:
            i += 1
    return plan


def _first_conv_fits(step: Step) -> bool:
    conv = step.module
    return (
        step.kind == "conv"
        and isinstance(conv, nn.Conv2d)
        and conv.groups == 1
        and tuple(conv.stride) == (1, 1)
        and tuple(conv.dilation) == (1, 1)
        and not isinstance(conv.padding, str)
        and conv.padding_mode == "zeros"
    )


def _relu_and_pool(steps: list[Step]) -> bool:
    if len(steps) != 2:
        return False
    kinds = {type(s.module) for s in steps}
    if kinds != {nn.ReLU, nn.MaxPool2d}:
        return False
    pool = next(s.module for s in steps if isinstance(s.module, nn.MaxPool2d))
    return (
        _pair(pool.kernel_size) == (2, 2)
        and _pair(pool.stride if pool.stride is not None else pool.kernel_size) == (2, 2)
        and _pair(pool.padding) == (0, 0)
        and _pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
    )


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value, value)


def _cpu_autocast_dtype() -> torch.dtype | None:
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        enabled, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    else:
        enabled, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
    return dtype if enabled else None


def conv_relu_pool(
    x: Tensor, weight: Tensor, bias: Tensor | None, conv: nn.Conv2d, members: int
) -> Tensor | None:
    """``pool(relu(conv(x)))`` of every member (``x``: ``(B, M·Cin, H, W)``, the fused
    conv layout; ``weight``/``bias``: the stacked parameters), as a channels-last
    ``(B, M·C, H', W')`` tensor; ``None`` when the kernel does not apply (see the module
    doc; also when ``x`` requires a gradient). Under CPU autocast the inputs are rounded to
    its dtype and the output returned in it, as the autocast convolution would (for bf16,
    the convolution's outputs are rounded before the pool compares them, so that rounding
    ties resolve as they do in the layers)."""
    kernels = cpu_kernels()
    if (
        kernels is None
        or x.device.type != "cpu"
        or x.requires_grad
        or x.dtype != torch.float32
        or weight.dtype != torch.float32
    ):
        return None
    cast = _cpu_autocast_dtype()
    mc, cin, kh, kw = weight.shape
    c = mc // members
    # (M·C, Cin, kh, kw) -> (M, Cin·kh·kw, Cp): each member's taps, channels innermost,
    # zero-padded to the kernel's channel block
    padding = (0, -c % _CHANNEL_BLOCK)
    taps = F.pad(weight.reshape(members, c, cin * kh * kw).transpose(1, 2), padding)
    per_member_bias = F.pad(bias.view(members, c), padding) if bias is not None else None
    if cast is not None:
        x = x.to(cast).float()
        taps = taps.to(cast).float()
        if per_member_bias is not None:
            per_member_bias = per_member_bias.to(cast).float()
    nhwc = x.permute(0, 2, 3, 1).contiguous()
    geometry = (cin, c, kh, kw, *conv.padding)
    trained = weight.requires_grad or (bias is not None and bias.requires_grad)
    need = torch.is_grad_enabled() and trained  # else no indices to keep
    flags = (need, cast == torch.bfloat16)
    if per_member_bias is None:
        per_member_bias = taps.new_empty(0)  # the kernel's "no bias"
    out = _ConvReluPool.apply(nhwc, taps, per_member_bias, geometry, flags)
    out = out.permute(0, 3, 1, 2)  # (B, M·C, H', W'), channels-last in memory
    return out.to(cast) if cast is not None else out


class _ConvReluPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nhwc: Tensor, taps: Tensor, bias: Tensor, geometry: tuple, flags: tuple):
        # flags: (keep the indices for a backward, round the conv outputs to bf16)
        out, idx = cpu_kernels().conv_relu_pool_forward(
            nhwc, taps.contiguous(), bias.contiguous(), *geometry, *flags
        )
        ctx.save_for_backward(nhwc, idx)
        cin, _, kh, kw, pad_h, pad_w = geometry
        ctx.geometry = (cin, taps.shape[2], kh, kw, pad_h, pad_w)
        ctx.members = taps.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        nhwc, idx = ctx.saved_tensors
        dw, db = cpu_kernels().conv_relu_pool_backward(
            grad.contiguous(), idx, nhwc, ctx.members, *ctx.geometry
        )
        return None, dw, db if ctx.needs_input_grad[2] else None, None, None


def pool_relu(x: Tensor) -> Tensor | None:
    """``relu(max_pool2d(x, 2))`` of a channels-last ``(B, C, H, W)`` CPU tensor (float32
    or bfloat16), channels-last; ``None`` when the kernel does not apply."""
    kernels = cpu_kernels()
    if (
        kernels is None
        or x.device.type != "cpu"
        or x.dtype not in (torch.float32, torch.bfloat16)
        or x.dim() != 4
        or not x.is_contiguous(memory_format=torch.channels_last)
        or x.shape[2] < 2
        or x.shape[3] < 2
    ):
        return None
    need = torch.is_grad_enabled() and x.requires_grad
    return _PoolRelu.apply(x.permute(0, 2, 3, 1), need).permute(0, 3, 1, 2)


class _PoolRelu(torch.autograd.Function):
    @staticmethod
    def forward(ctx, nhwc: Tensor, need: bool) -> Tensor:
        out, idx = cpu_kernels().pool_relu_forward(nhwc, True, need)
        ctx.save_for_backward(idx)
        ctx.size = nhwc.shape[1:3]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (idx,) = ctx.saved_tensors
        return cpu_kernels().pool_relu_backward(grad.contiguous(), idx, *ctx.size), None
