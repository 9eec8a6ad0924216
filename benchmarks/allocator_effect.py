#!/usr/bin/env python
"""What the workers' allocator setting (:mod:`benchharness.allocator`) is worth to one
job: training steps of CompressedNet (batch 128, fp32, SGD momentum) in fresh processes,
with the setting (as every ``bench run`` worker has it) and with glibc's defaults (as a
plain script has them), alternating, the median ms per step of each.

A fresh process per timing, because the setting is process-wide and glibc's own mmap
threshold adapts to what a process has freed before.

    .venv/bin/python benchmarks/allocator_effect.py [--alphas 0.5,1,2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Prints whether the setting is in effect and the mean seconds per training step over
# ``steps`` steps after ``warm`` ones.
_STEPS = """
import sys, time
import torch
import torch.nn.functional as F
from benchharness.allocator import retain_freed_memory
from benchharness.plugins import get_registry
alpha, warm, steps = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
on = retain_freed_memory()  # a no-op under BENCH_MALLOC_TUNING=0
torch.manual_seed(0)
model = get_registry().create("model", "compressednet", {"width": alpha}).build((1, 28, 28), 10)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(128 * 8, 1, 28, 28), torch.randint(0, 10, (128 * 8,))
def run(n):
    for i in range(n):
        j = (i % 8) * 128
        loss = F.cross_entropy(model(x[j:j + 128]), y[j:j + 128])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
run(warm)
start = time.perf_counter()
run(steps)
print(on, (time.perf_counter() - start) / steps)
"""


def step_seconds(alpha: float, tuned: bool, warm: int = 10, steps: int = 40) -> float:
    """Seconds per step in a fresh process, with the setting (``tuned``) or without.
    Raises RuntimeError when the process did not get the setting asked for (where it
    cannot take effect at all: off Linux or glibc)."""
    env = {**os.environ, "BENCH_MALLOC_TUNING": "1" if tuned else "0"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", _STEPS, str(alpha), str(warm), str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    on, seconds = out.split()[-2:]
    if on != str(tuned):
        raise RuntimeError(f"asked for the allocator setting {tuned}, the process had {on}")
    return float(seconds)


def measure_allocator(
    alphas: list[float], repeats: int = 3, steps: int = 40
) -> list[dict[str, object]]:
    """Per α: the median seconds per step with the setting (``seconds``) and with glibc's
    defaults (``plain_seconds``), timed alternately in fresh processes."""
    results = []
    for alpha in alphas:
        tuned, plain = [], []
        for i in range(repeats):
            order = (True, False) if i % 2 == 0 else (False, True)
            for setting in order:
                (tuned if setting else plain).append(step_seconds(alpha, setting, steps=steps))
        results.append(
            {
                "alpha": alpha,
                "seconds": statistics.median(tuned),
                "plain_seconds": statistics.median(plain),
            }
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", default="0.5,1,2")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    alphas = [float(a) for a in args.alphas.split(",")]
    print(f"{'alpha':>6} {'setting ms':>11} {'defaults ms':>12} {'defaults/setting':>17}")
    for r in measure_allocator(alphas, args.repeats, args.steps):
        tuned, plain = float(r["seconds"]), float(r["plain_seconds"])  # type: ignore[arg-type]
        ms = f"{1000 * tuned:>11.1f} {1000 * plain:>12.1f}"
        print(f"{r['alpha']:>6} {ms} {plain / tuned:>16.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
