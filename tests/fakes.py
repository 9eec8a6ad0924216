"""Test doubles shared by several test modules."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchharness import Data, Evaluation, TrainContext


class FakeContext(TrainContext):
    """Data on the CPU, evaluation on the test split, logs kept in a list."""

    def __init__(self, data: Data, seed: int = 0):
        self.data = data
        self.device = torch.device("cpu")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.compressors = []
        self.logs: list[tuple[int, int | None, str, dict[str, float]]] = []

    def evaluate(self, model: nn.Module) -> Evaluation:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(self.data.test_x)
        model.train(was_training)
        accuracy = (out.argmax(1) == self.data.test_y).float().mean().item()
        return Evaluation(F.cross_entropy(out, self.data.test_y).item(), accuracy)

    def log(self, step, total=None, *, phase="train", **values):
        self.logs.append((step, total, phase, values))

    def set_compressed(self, compressed):
        raise NotImplementedError

    def train_reference(self, model, optimizer):
        raise NotImplementedError
