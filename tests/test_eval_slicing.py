"""metrics.evaluate's CPU fast path (cache-sized slices) against the straightforward pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchharness import metrics
from benchharness.plugins import get_registry


@pytest.mark.parametrize("batch_size", [metrics.CPU_EVAL_ROWS * 3 + 7, 1000, 64])
def test_sliced_evaluation_equals_one_plain_pass_per_batch(batch_size):
    torch.manual_seed(0)
    model = get_registry().create("model", "compressednet", {"width": 0.5}).build((1, 28, 28), 10)
    x, y = torch.randn(1100, 1, 28, 28), torch.randint(0, 10, (1100,))
    model.train()
    got = metrics.evaluate(model, x, y, batch_size)
    assert model.training  # mode restored

    model.eval()
    with torch.no_grad():  # the straightforward path: whole batches of batch_size, float64
        logits = torch.cat([model(x[s : s + batch_size]) for s in range(0, 1100, batch_size)])
    loss = F.cross_entropy(logits.double(), y).item()
    accuracy = (logits.argmax(1) == y).double().mean().item()
    assert got.accuracy == accuracy
    assert got.loss == pytest.approx(loss, rel=1e-6)
