"""Compressors as the LC algorithm's C step, Θ = Π(w − λ/μ) then Δ(Θ), on the weights of
LeNet300 (784-300-100-10: fc1 300×784, fc2 100×300, fc3 10×100)."""

from __future__ import annotations

import torch

from benchharness.plugins import get_registry
from benchmarks import IMAGE_SHAPE, NUM_CLASSES

HIDDEN = [300, 100]  # LeNet300's hidden widths
MU = 1e-3

COMPRESSORS = {
    "quantize_k2_kmeans": ("quantize", {"k": 2, "method": "kmeans"}),
    "prune_keep0.05": ("prune", {"keep": 0.05}),
    "lowrank_rank10": ("lowrank", {"rank": 10}),
}


class CStep:
    params = (list(COMPRESSORS),)
    param_names = ["compressor"]
    timeout = 120.0

    def setup(self, compressor):
        registry = get_registry()
        torch.manual_seed(0)
        model = registry.create("model", "lenet300", {"hidden": HIDDEN}).build(
            IMAGE_SHAPE, NUM_CLASSES
        )
        name, options = COMPRESSORS[compressor]
        self.compressor = registry.create("compressor", name, options).with_mu(MU)
        # w − λ/μ: the trained weights shifted by a small multiplier estimate.
        self.weights = {
            n: (w.detach() + 1e-3 * torch.randn_like(w))
            for n, w in self.compressor.select(model).items()
        }

    def time_c_step(self, compressor):
        """Seconds for Π (compress) and Δ (decompress) of all three layers."""
        self.compressor.compress(self.weights).decompress()
