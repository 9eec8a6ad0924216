#!/usr/bin/env python
"""The harness against plain baselines, in one process, with ratios.

Times, interleaved (harness then baseline, then the other way round, ``--repeats``
times), in the same process:

* one training epoch of compressednet (α = 1) on ``--samples`` synthetic 28×28 images
  (+ one pass over 1,024 test images) through the harness (``train_epochs`` over
  ``JobContext.batches``) and through a hand-written PyTorch loop with the same model
  initialisation, optimizer (SGD 0.01, momentum 0.9) and batch size (128);
* the ``dct`` transform (ratio 0.3, both selections) on ``--images`` images against a
  float64 SciPy reference (``scipy.fft.dctn``, the same coefficient selection with
  NumPy, ``scipy.fft.idctn``).

Prints the median seconds of each side and harness/baseline (< 1: the harness is
faster), ending with one ``RATIO <name> harness/<baseline> = <x>`` line per comparison.
Always exits 0 — it reports, it does not judge — unless ``--max-ratio X`` is given and the
training-loop ratio exceeds X (exit 1).

    .venv/bin/python benchmarks/compare_baseline.py                  # defaults below
    .venv/bin/python benchmarks/compare_baseline.py --threads 1      # steadier when shared
    .venv/bin/python benchmarks/compare_baseline.py --max-ratio 1.15 # a CI gate
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
import torch  # noqa: E402

from benchharness.plugins import get_registry  # noqa: E402
from benchmarks import EpochPair, synthetic_data  # noqa: E402

DCT_RATIO = 0.3


def _zigzag_mask(h: int, w: int, k: int) -> np.ndarray:
    """The first k cells of an h×w grid in JPEG zig-zag order (the reference's own)."""
    cells = sorted(
        ((r, c) for r in range(h) for c in range(w)),
        key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else -rc[0]),
    )
    mask = np.zeros(h * w)
    mask[[r * w + c for r, c in cells[:k]]] = 1.0
    return mask


def scipy_dct_reference(x: np.ndarray, k: int, selection: str) -> np.ndarray:
    """Keep k of the H·W orthonormal 2-D DCT-II coefficients of each image, then invert:
    the float64 SciPy/NumPy equivalent of the ``dct`` transform."""
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    coef = scipy.fft.dctn(x, type=2, norm="ortho", axes=(-2, -1)).reshape(n, -1)
    if selection == "lowfreq":
        coef = coef * _zigzag_mask(h, w, k)
    else:
        idx = np.argpartition(-np.abs(coef), k - 1, axis=1)[:, :k]
        kept = np.zeros_like(coef)
        np.put_along_axis(kept, idx, np.take_along_axis(coef, idx, axis=1), axis=1)
        coef = kept
    return scipy.fft.idctn(coef.reshape(x.shape), type=2, norm="ortho", axes=(-2, -1))


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(
    harness: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of (harness, baseline), alternating which goes first."""
    h, b = [], []
    for i in range(repeats):
        if i % 2 == 0:
            h.append(_timed(harness))
            b.append(_timed(baseline))
        else:
            b.append(_timed(baseline))
            h.append(_timed(harness))
    return statistics.median(h), statistics.median(b)


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed pairs per comparison")
    parser.add_argument("--samples", type=int, default=8192, help="training images per epoch")
    parser.add_argument("--images", type=int, default=10_000, help="images for the DCT")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own choice)",
    )
    parser.add_argument(
        "--max-ratio",
        type=float,
        default=None,
        help="exit 1 if the training-loop harness/plain ratio exceeds this",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.samples < 1 or args.images < 1:
        parser.error("--repeats, --samples and --images must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    rows: list[tuple[str, str, float, float]] = []  # (name, baseline, harness s, baseline s)

    # Training loop. Warm-up: one tiny epoch of each, outside the timings.
    warm = EpochPair(min(args.samples, 256), 64)
    warm.harness()
    warm.plain()
    pair = EpochPair(args.samples)
    h, b = interleaved(pair.harness, pair.plain, args.repeats)
    rows.append((f"training_epoch[{args.samples}]", "plain_pytorch", h, b))

    # DCT transform vs the float64 SciPy reference.
    data = synthetic_data(args.images, 0)
    x64 = data.train_x.numpy().astype(np.float64)
    for selection in ("magnitude", "lowfreq"):
        transform = get_registry().create(
            "transform", "dct", {"ratio": DCT_RATIO, "selection": selection}
        )
        k = transform.kept(28, 28)
        transform.apply(synthetic_data(16, 0))
        scipy_dct_reference(x64[:16], k, selection)
        h, b = interleaved(
            lambda t=transform: t.apply(data),
            lambda s=selection, k=k: scipy_dct_reference(x64, k, s),
            args.repeats,
        )
        rows.append((f"dct_{selection}[{args.images}]", "scipy_float64", h, b))

    print(
        f"benchharness vs baselines: medians of {args.repeats} interleaved repeat(s); "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{os.cpu_count()} CPU(s)"
    )
    width = max(len(name) for name, *_ in rows)
    print(
        f"{'comparison':<{width}}  {'baseline':<14} {'harness':>11} {'baseline':>11} {'ratio':>7}"
    )
    for name, baseline, hs, bs in rows:
        print(
            f"{name:<{width}}  {baseline:<14} {_seconds(hs):>11} {_seconds(bs):>11} {hs / bs:>7.3f}"
        )
    for name, baseline, hs, bs in rows:
        print(f"RATIO {name} harness/{baseline} = {hs / bs:.3f}")

    train_ratio = rows[0][2] / rows[0][3]
    if args.max_ratio is not None and train_ratio > args.max_ratio:
        print(
            f"training-loop ratio {train_ratio:.3f} exceeds --max-ratio {args.max_ratio}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
