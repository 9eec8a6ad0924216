"""Optimizer plugins that wrap optimizer plugins: what a wrapper may change in its base.

A wrapping scheme (e.g. the weight compander: a reparameterisation trained by any base
optimizer) runs another optimizer plugin on the current model with
:meth:`benchharness.TrainContext.train_with` and a :class:`Wrapping`. The base plugin
builds every torch optimizer with :meth:`benchharness.TrainContext.build_optimizer`,
which applies the wrapping: the wrapper decides the parameter groups (which tensors are
trained, with which weight decay, plus any keys of its own) and gets torch's step pre-
and post-hooks (to change gradients before the base's update or the parameters after
it). The training loop itself is the base's and stays unchanged, so the wrapper needs
no copy of SGD or Adam.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["ParamGroups", "StepHook", "Wrapping", "build_torch_optimizer", "default_param_groups"]

#: ``(model, weight_decay) -> param groups``: ``weight_decay`` is the base's own setting.
ParamGroups = Callable[[nn.Module, float], list[dict[str, Any]]]
#: Called with the torch optimizer, before or after each of its ``step()`` calls.
StepHook = Callable[[torch.optim.Optimizer], None]


@dataclasses.dataclass(frozen=True)
class Wrapping:
    """What a wrapping scheme changes in the base optimizer it runs.

    * ``param_groups(model, weight_decay)`` — the parameter groups of every torch
      optimizer the base builds, given the base's weight decay (each group may set its
      own ``weight_decay``, ``lr`` is overwritten by the base's schedule, and extra keys
      are kept and visible to the hooks through ``optimizer.param_groups``). Default: one
      group of all parameters with the base's weight decay.
    * ``before_step(optimizer)`` — after the backward pass, before the update: change
      ``p.grad`` (add a regulariser's gradient, rescale), or call ``backward()`` on an
      extra loss term, which accumulates into the gradients.
    * ``after_step(optimizer)`` — after the update: change the parameters in place
      (under ``torch.no_grad()``), e.g. rescale the step just taken.
    """

    param_groups: ParamGroups | None = None
    before_step: StepHook | None = None
    after_step: StepHook | None = None


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """One group holding every parameter of ``model`` with ``weight_decay``."""
    return [{"params": list(model.parameters()), "weight_decay": weight_decay}]


def build_torch_optimizer(
    wrapping: Wrapping | None,
    cls: type[torch.optim.Optimizer],
    model: nn.Module,
    weight_decay: float,
    kwargs: dict[str, Any],
) -> torch.optim.Optimizer:
    """``cls`` over the wrapping's parameter groups (or all parameters), with its hooks."""
    make_groups = wrapping.param_groups if wrapping and wrapping.param_groups else None
    groups = (make_groups or default_param_groups)(model, weight_decay)
    optimizer = cls(groups, weight_decay=weight_decay, **kwargs)
    if wrapping is not None:
        before, after = wrapping.before_step, wrapping.after_step
        if before is not None:
            optimizer.register_step_pre_hook(lambda opt, _args, _kwargs: before(opt))
        if after is not None:
            optimizer.register_step_post_hook(lambda opt, _args, _kwargs: after(opt))
    return optimizer
