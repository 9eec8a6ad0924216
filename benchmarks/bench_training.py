"""The harness's training loop against a plain PyTorch loop.

One epoch of compressednet (α = 1) on ``N_TRAIN`` synthetic 28×28 images, SGD (lr 0.01,
momentum 0.9), batch 128, then one pass over ``N_TEST`` test images — through
``train_epochs`` + ``JobContext.batches`` (the harness) or through a hand-written ``for``
loop (plain PyTorch). Both sides use their own, identically initialised model.
"""

from __future__ import annotations

import statistics
import time

from benchmarks import EpochPair

# Sizes (module constants so that tests/test_benchmarks.py can shrink them).
N_TRAIN = 8192
N_TEST = 1024
OVERHEAD_SAMPLES = 2048  # per epoch of track_overhead_ratio
OVERHEAD_REPEATS = 3  # interleaved harness/plain pairs of track_overhead_ratio
WARMUP_SAMPLES = 256


def _warm_up() -> None:
    """One tiny epoch of each loop, so that one-off costs (allocator, kernel selection,
    lazy imports) do not land in the first timed sample."""
    pair = EpochPair(WARMUP_SAMPLES, 64)
    pair.harness()
    pair.plain()


class TrainingEpoch:
    """Seconds per training epoch (+ test evaluation)."""

    number = 1
    repeat = (2, 5, 20.0)
    warmup_time = 0.0
    timeout = 300.0

    def setup(self):
        self.pair = EpochPair(N_TRAIN, N_TEST)
        _warm_up()

    def time_harness_epoch(self):
        self.pair.harness()

    def time_plain_epoch(self):
        self.pair.plain()


class TrainingOverhead:
    """harness epoch time / plain epoch time, medians of interleaved pairs (1.0 = no
    overhead). Interleaving makes the ratio robust to machine-wide slowdowns that would
    skew two separately timed benchmarks."""

    unit = "ratio"  # harness/plain
    timeout = 300.0

    def setup(self):
        self.pair = EpochPair(OVERHEAD_SAMPLES, N_TEST)
        _warm_up()

    def track_overhead_ratio(self):
        harness, plain = [], []
        for i in range(OVERHEAD_REPEATS):
            order = (("h", self.pair.harness), ("p", self.pair.plain))
            for label, run in order if i % 2 == 0 else order[::-1]:
                start = time.perf_counter()
                run()
                (harness if label == "h" else plain).append(time.perf_counter() - start)
        return statistics.median(harness) / statistics.median(plain)
