"""CompressionContext (what a data-aware compressor gets) and check_compressed (what the
harness accepts back), against hand computations on a tiny model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchharness import BenchError, Compressed, CompressionContext, check_compressed
from benchharness.coding import (
    LayerwiseWeights,
    codebook_bits,
    column_sparse_bits,
    csr_bits,
    factor_bits,
    index_bits,
    sparse_bits,
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _context(seed: int = 0, n: int = 40) -> CompressionContext:
    x = torch.arange(n * 6, dtype=torch.float32).reshape(n, 6) / (n * 6)
    y = torch.arange(n) % 3
    return CompressionContext(_model(), x, y, seed=seed)


# ------------------------------------------------------------ calibration data
def test_calibration_batches_are_training_rows_without_repeats():
    ctx = _context()
    batches = ctx.calibration_batches(25, batch_size=10)
    assert [len(y) for _, y in batches] == [10, 10, 5]
    x = torch.cat([b[0] for b in batches])
    rows = {tuple(r.tolist()) for r in ctx._train_x}
    assert all(tuple(r.tolist()) in rows for r in x)
    assert len({tuple(r.tolist()) for r in x}) == 25


def test_calibration_depends_on_the_job_seed_only():
    same = [_context(seed=3).calibration_batches(8) for _ in range(2)]
    assert torch.equal(same[0][0][0], same[1][0][0])
    other = _context(seed=4).calibration_batches(8)
    assert not torch.equal(same[0][0][0], other[0][0])


def test_calibration_larger_than_the_split_is_a_one_line_error():
    with pytest.raises(BenchError, match="calibration size 41 exceeds the training split"):
        _context(n=40).calibration_batches(41)


def test_capture_and_loss_match_a_hand_forward_pass():
    ctx = _context()
    batches = ctx.calibration_batches(20, batch_size=7)
    got = ctx.capture(ctx.model, ["0", "2"], batches)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    first = ctx.model[0](x)
    assert torch.allclose(got["0"].inputs, x)
    assert torch.allclose(got["0"].outputs, first)
    assert torch.allclose(got["2"].inputs, torch.relu(first))
    with torch.no_grad():
        logits = ctx.model(x)
    assert got["2"].outputs.shape == (20, 3)
    assert ctx.loss(ctx.model, batches) == pytest.approx(float(F.cross_entropy(logits, y)))


def test_capture_names_an_unknown_module():
    ctx = _context()
    with pytest.raises(BenchError, match="no submodule named 'fc9'"):
        ctx.capture(ctx.model, ["fc9"], ctx.calibration_batches(4))


def test_report_keeps_finite_metrics_and_refuses_others():
    ctx = _context()
    ctx.report(distortion=0.25, layers=2)
    assert ctx.metrics == {"distortion": 0.25, "layers": 2.0}
    with pytest.raises(BenchError, match="distortion is not finite"):
        ctx.report(distortion=float("nan"))


def test_fine_tune_without_a_trainer_says_so():
    with pytest.raises(BenchError, match="no trainer"):
        _context().fine_tune(_model(), {"name": "sgd"})


# ------------------------------------------------------------- return checks
class _Dense(Compressed):
    realised = False

    def __init__(self, tensors, bits=0):
        self.tensors = tensors
        self._bits = bits

    def decompress(self):
        return self.tensors

    def bits(self):
        return self._bits


class _Unstated(_Dense):
    realised = None


SELECTED = {"0.weight": torch.zeros(5, 6)}


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ({"0.weight": torch.zeros(5, 6)}, "returned dict, not a Compressed"),
        (_Dense({"2.weight": torch.zeros(3, 5)}), "weight '2.weight', which it did not select"),
        (_Dense({"0.weight": torch.zeros(6, 5)}), r"has shape \(6, 5\), the weight has \(5, 6\)"),
        (_Dense({"0.weight": torch.zeros(5, 6)}, bits=-1), r"bits\(\) returned -1 < 0"),
        (_Dense({"0.weight": torch.zeros(5, 6)}, bits=1.5), r"bits\(\) returned 1.5, not an int"),
        (_Unstated({"0.weight": torch.zeros(5, 6)}), "does not state `realised`"),
    ],
)
def test_check_compressed_names_the_compressor_in_one_line(part, message):
    with pytest.raises(BenchError, match=message) as error:
        check_compressed("mine", part, SELECTED)
    assert str(error.value).startswith("compressor mine") and "\n" not in str(error.value)


def test_check_compressed_accepts_a_valid_part():
    part = _Dense({"0.weight": torch.ones(5, 6)}, bits=7)
    assert check_compressed("mine", part, SELECTED) is part


# ------------------------------------------------------------------ bit model
def test_bit_helpers_against_hand_counts():
    assert [index_bits(n) for n in (1, 2, 3, 4, 5, 784)] == [0, 1, 2, 2, 3, 10]
    assert codebook_bits(4) == 128
    assert sparse_bits(numel=1000, nnz=7) == 7 * (32 + 10)
    # 3 × 8 with 5 nonzeros: 5 values + 5 column indices of 3 bits + 4 row pointers of 3 bits
    assert csr_bits(rows=3, cols=8, nnz=5) == 5 * 32 + 5 * 3 + 4 * 3
    assert column_sparse_bits(rows=3, cols=8, kept_columns=2) == 3 * 2 * 32 + 8
    assert factor_bits(m=10, n=4, rank=2) == 32 * 2 * 14


def test_layerwise_weights_states_realised():
    assert LayerwiseWeights({}).realised is True


def test_capture_is_not_overwritten_by_an_inplace_activation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(inplace=True), nn.Linear(5, 3))
    ctx = CompressionContext(model, torch.randn(30, 6), torch.arange(30) % 3, seed=0)
    batches = ctx.calibration_batches(30)
    got = ctx.capture(model, ["0"], batches)
    with torch.no_grad():
        pre = model[0](batches[0][0])
    assert (got["0"].outputs < 0).any()  # the pre-activation, negatives included
    assert torch.allclose(got["0"].outputs, pre)
