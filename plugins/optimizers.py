"""Built-in training schemes: plain minibatch SGD and Adam with epoch-wise lr schedules.

Both build their torch optimizer with ``ctx.build_optimizer``, so a wrapping scheme (the
weight compander, registered here too) can run them with its own parameter groups and
step hooks."""

from __future__ import annotations

import bisect
import itertools
from functools import partial
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from benchharness import Optimizer, PluginOptions, TrainContext, hookimpl

if TYPE_CHECKING:
    from torch import nn


class TrainingOptions(PluginOptions):
    """Options shared by the built-in optimizers: length, batch and lr schedule."""

    lr: float = Field(0.01, gt=0, description="initial learning rate")
    weight_decay: float = Field(0.0, ge=0, description="L2 weight decay coefficient")
    epochs: int = Field(10, gt=0, description="passes over the training set")
    batch_size: int = Field(128, gt=0, description="minibatch size")
    schedule: Literal["constant", "cosine", "step", "multistep"] = Field(
        "cosine",
        description="epoch-wise lr schedule: 'constant'; 'cosine' = anneal lr → lr_min over "
        "the epochs; 'step' = multiply by gamma every step_size epochs (not below lr_min); "
        "'multistep' = multiply by gamma at each of the milestones (not below lr_min)",
    )
    lr_min: float = Field(0.0, ge=0, description="final lr of 'cosine', floor of 'step'")
    step_size: int = Field(10, gt=0, description="epochs between lr drops ('step' schedule)")
    gamma: float = Field(
        0.1, description="lr factor per drop ('step', 'multistep' schedules), in (0, 1]"
    )
    milestones: list[int] = Field(
        default_factory=list,
        description="epochs (counted from 0) at which 'multistep' multiplies the lr by gamma, "
        "increasing, e.g. [90, 136]",
    )

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(m <= 0 for m in value) or any(b <= a for a, b in itertools.pairwise(value)):
            raise ValueError(f"must be increasing positive epochs, got {value}")
        return value

    @field_validator("gamma")
    @classmethod
    def _gamma(cls, value: float) -> float:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"must be in (0, 1], got {value}")
        return value

    @model_validator(mode="after")
    def _lr_min_below_lr(self):
        if self.lr_min > self.lr:
            raise ValueError(f"lr_min ({self.lr_min}) must not exceed lr ({self.lr})")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_milestones(self, handler):
        # an empty list is left out, so the resolved tables (and job ids) of studies
        # written before 'multistep' existed stay what they were
        data = handler(self)
        if not self.milestones:
            data.pop("milestones", None)
        return data

    @model_validator(mode="after")
    def _milestones_for_multistep(self):
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones, e.g. [90, 136]")
        return self

    def lr_for_epoch(self):
        """``epoch -> lr`` for :func:`benchharness.training.train_epochs`."""
        from benchharness.training import lr_at

        if self.schedule == "multistep":
            return partial(
                _multistep,
                lr=self.lr,
                milestones=self.milestones,
                gamma=self.gamma,
                lr_min=self.lr_min,
            )
        return partial(
            lr_at,
            lr=self.lr,
            epochs=self.epochs,
            schedule=self.schedule,
            lr_min=self.lr_min,
            step_size=self.step_size,
            gamma=self.gamma,
        )


def _multistep(epoch: int, *, lr: float, milestones: list[int], gamma: float, lr_min: float):
    """lr·gamma^(number of milestones ≤ epoch), not below lr_min (torch's MultiStepLR)."""
    return max(lr_min, lr * gamma ** bisect.bisect_right(milestones, epoch))


def _run(options: TrainingOptions, model: nn.Module, ctx: TrainContext, optimizer) -> nn.Module:
    from benchharness.training import train_epochs

    train_epochs(
        model,
        ctx,
        optimizer,
        epochs=options.epochs,
        batch_size=options.batch_size,
        lr_for_epoch=options.lr_for_epoch(),
    )
    return model


class SGD(Optimizer):
    """Minibatch SGD with (Nesterov) momentum, weight decay and an lr schedule."""

    name = "sgd"
    version = "1"
    wrappable = True

    class Options(TrainingOptions):
        lr: float = Field(0.01, gt=0, description="initial learning rate")
        momentum: float = Field(0.9, ge=0, lt=1, description="momentum coefficient, in [0, 1)")
        nesterov: bool = Field(False, description="use Nesterov momentum (needs momentum > 0)")

        @model_validator(mode="after")
        def _nesterov_needs_momentum(self):
            if self.nesterov and self.momentum == 0:
                raise ValueError("nesterov = true needs momentum > 0, got momentum = 0")
            return self

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        import torch

        o = self.options
        model.to(ctx.device)
        opt = ctx.build_optimizer(
            torch.optim.SGD,
            model,
            lr=o.lr,
            momentum=o.momentum,
            nesterov=o.nesterov,
            weight_decay=o.weight_decay,
        )
        return _run(o, model, ctx, opt)


class Adam(Optimizer):
    """Adam (or AdamW with decoupled weight decay) with an lr schedule."""

    name = "adam"
    version = "1"
    wrappable = True

    class Options(TrainingOptions):
        lr: float = Field(1e-3, gt=0, description="initial learning rate")
        betas: tuple[float, float] = Field(
            (0.9, 0.999), description="decay rates of the gradient moment estimates, each in [0, 1)"
        )
        eps: float = Field(1e-8, gt=0, description="term added to the denominator for stability")
        decoupled: bool = Field(
            False, description="apply weight_decay decoupled from the gradient (AdamW)"
        )

        @field_validator("betas")
        @classmethod
        def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
            if not all(0.0 <= b < 1.0 for b in value):
                raise ValueError(f"each beta must be in [0, 1), got {list(value)}")
            return value

    def train(self, model: nn.Module, ctx: TrainContext) -> nn.Module:
        import torch

        o = self.options
        model.to(ctx.device)
        cls = torch.optim.AdamW if o.decoupled else torch.optim.Adam
        opt = ctx.build_optimizer(
            cls, model, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        return _run(o, model, ctx, opt)


@hookimpl
def register_optimizers(register):
    from benchharness_plugins.compander import Compander

    register(SGD)
    register(Adam)
    register(Compander)
