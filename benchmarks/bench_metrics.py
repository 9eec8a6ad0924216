"""The harness's per-job measurements of a model, on compressednet (α = 1): the FLOP
count (``metrics.layer_flops``, torch's FlopCounterMode) and the latency measurement
(``metrics.latency_ms`` with the harness's defaults, 5 warm-up + 30 timed forward passes)."""

from __future__ import annotations

import torch

from benchharness import metrics
from benchmarks import IMAGE_SHAPE, build_compressednet

LATENCY_REPEATS = 30  # the [measure] defaults
LATENCY_WARMUP = 5
CPU = torch.device("cpu")


class Measurement:
    timeout = 120.0

    def setup(self):
        self.model = build_compressednet(0)
        metrics.layer_flops(self.model, IMAGE_SHAPE, CPU)  # see timeraw_ below

    def time_layer_flops(self):
        """Seconds to count the forward FLOPs per module (one sample), in a process that
        has counted FLOPs before."""
        metrics.layer_flops(self.model, IMAGE_SHAPE, CPU)


def timeraw_layer_flops_first_call():
    """Seconds for the first ``layer_flops`` call of a fresh interpreter (torch imported
    and the model built beforehand, untimed): what a new worker process pays once,
    FlopCounterMode's one-off setup included."""
    # Runs in a fresh interpreter that cannot import `benchmarks`: benchharness only.
    setup = (
        "import torch\n"
        "from benchharness import metrics\n"
        "from benchharness.plugins import get_registry\n"
        "torch.manual_seed(0)\n"
        "model = get_registry().create('model', 'compressednet').build((1, 28, 28), 10)\n"
    )
    code = "metrics.layer_flops(model, (1, 28, 28), torch.device('cpu'))\n"
    return code, setup


timeraw_layer_flops_first_call.timeout = 120.0
timeraw_layer_flops_first_call.repeat = (1, 3, 30.0)


class Latency:
    params = ([1, 128],)
    param_names = ["batch_size"]
    timeout = 120.0
    number = 1
    repeat = (3, 10, 10.0)

    def setup(self, batch_size):
        self.model = build_compressednet(0)

    def time_latency_ms(self, batch_size):
        """Seconds for one ``latency_ms`` measurement (35 forward passes at this batch)."""
        metrics.latency_ms(
            self.model,
            IMAGE_SHAPE,
            batch_size,
            CPU,
            repeats=LATENCY_REPEATS,
            warmup=LATENCY_WARMUP,
        )
