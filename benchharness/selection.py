"""Honest model selection: a validation split carved from the training data, and the
epoch whose weights a training keeps (``[data] validation`` and ``select``).

The test split is never looked at here. ``best_val`` keeps the weights of the epoch with
the highest validation accuracy (ties: the lower validation loss, then the earlier
epoch); the chosen epoch is logged as the curve point ``(phase "selection", step =
epoch)`` and stored by the runner as ``runs.selected_epoch``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from benchharness.errors import BenchError
from benchharness.records import CurvePoint
from benchharness.training_api import Evaluation

__all__ = ["BestEpoch", "SELECTION_PHASE", "selected_epoch", "validation_indices"]

SELECTION_PHASE = "selection"


def validation_indices(n: int, fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(train, validation) indices of ``n`` training samples: a seeded permutation whose
    first ``round(fraction·n)`` entries are the validation split; both in ascending order."""
    count = round(fraction * n)
    if count < 1 or count >= n:
        raise BenchError(
            f"data.validation = {fraction} of {n} training samples leaves "
            f"{'no validation' if count < 1 else 'no training'} samples"
        )
    # Its own stream, so that the split does not repeat the train_subset draw.
    generator = torch.Generator().manual_seed(seed + 0x5EED)
    order = torch.randperm(n, generator=generator)
    return order[count:].sort().values, order[:count].sort().values


class BestEpoch:
    """Keeps a copy of the weights (and buffers) of the best epoch seen so far."""

    def __init__(self) -> None:
        self.epoch: int | None = None
        self.evaluation: Evaluation | None = None
        self._state: dict[str, Tensor] | None = None

    def observe(self, model: nn.Module, epoch: int, evaluation: Evaluation) -> bool:
        """Remember ``model``'s state if ``evaluation`` (on the validation split) beats
        the best so far; return whether it did."""
        if self.evaluation is not None:
            best = (self.evaluation.accuracy, -self.evaluation.loss)
            if (evaluation.accuracy, -evaluation.loss) <= best:
                return False
        self.epoch, self.evaluation = epoch, evaluation
        with torch.no_grad():
            self._state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return True

    def restore(self, model: nn.Module) -> int:
        """Load the best epoch's state into ``model``; return that epoch."""
        if self._state is None or self.epoch is None:
            raise BenchError("select = 'best_val': no epoch was validated")
        model.load_state_dict(copy.copy(self._state))
        return self.epoch


def selected_epoch(curves: Iterable[CurvePoint], select: str) -> int | None:
    """The epoch whose weights the job's training returned, from its curves.

    ``best_val``: the step of the top-level ``selection`` point. ``last``: the last
    epoch of the top-level ``train`` phase. ``None`` when the training has neither, e.g.
    a scheme that compresses during training and returns its own final model.
    """
    points = list(curves)
    if select == "best_val":
        chosen = [p.step for p in points if p.phase == SELECTION_PHASE]
        if chosen:
            return chosen[-1]
    steps = [p.step for p in points if p.phase == "train"]
    return max(steps) if steps else None
