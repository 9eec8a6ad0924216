#!/usr/bin/env python
"""The harness against plain baselines, in one process, with ratios.

Times, interleaved (harness then baseline, then the other way round, ``--repeats``
times), in the same process:

* one training epoch of compressednet (α in ``--alphas``, default 0.5, 1, 2) on
  ``--samples`` training images (+ one pass over ``--test-samples`` test images) through
  the harness (``train_epochs`` over ``JobContext.batches``, ``ctx.evaluate``) and
  through a hand-written PyTorch loop with the same model initialisation, optimizer (SGD
  0.01, momentum 0.9) and batch size (128). The images are real MNIST when the MNIST
  files are in ``$BENCH_DATA_DIR`` (default ``../shared/data`` beside the repository),
  loaded by the harness's ``mnist`` plugin, else synthetic;
* the per-epoch test evaluation alone: ``ctx.evaluate`` against a plain
  ``torch.no_grad()`` loop over the same test images (batches of 1,000);
* the ``dct`` transform (ratio 0.3, both selections) on ``--images`` images against a
  float64 SciPy reference (``scipy.fft.dctn``, the same coefficient selection with
  NumPy, ``scipy.fft.idctn``).

Prints the median seconds (wall clock) of each side and harness/baseline (< 1: the
harness is faster), and the same ratio of CPU seconds (steadier on a shared machine),
ending with one ``RATIO <name> harness/<baseline> = <x>`` line per comparison. Always
exits 0 — it reports, it does not judge — unless ``--max-ratio X`` is given and a
training-loop ratio exceeds X (exit 1). :func:`measure_overhead` is the training and
evaluation part as a function (``benchmarks/speed_table.py`` uses it).

    .venv/bin/python benchmarks/compare_baseline.py                  # defaults below
    .venv/bin/python benchmarks/compare_baseline.py --threads 1      # steadier when shared
    .venv/bin/python benchmarks/compare_baseline.py --max-ratio 1.15 # a CI gate
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
import torch  # noqa: E402

from benchharness.api import Data  # noqa: E402
from benchharness.plugins import get_registry  # noqa: E402
from benchmarks import EpochPair, plain_evaluate, synthetic_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DCT_RATIO = 0.3


@functools.lru_cache(maxsize=16)
def _zigzag_mask(h: int, w: int, k: int) -> np.ndarray:
    """The first k cells of an h×w grid in JPEG zig-zag order (the reference's own;
    computed once per shape, as a script would, so a per-image loop does not time it)."""
    cells = sorted(
        ((r, c) for r in range(h) for c in range(w)),
        key=lambda rc: (rc[0] + rc[1], rc[0] if (rc[0] + rc[1]) % 2 else -rc[0]),
    )
    mask = np.zeros(h * w)
    mask[[r * w + c for r, c in cells[:k]]] = 1.0
    mask.flags.writeable = False
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


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved_timings(
    harness: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> dict[str, float]:
    """Median wall and CPU seconds of each side (``harness_s``, ``plain_s``,
    ``harness_cpu_s``, ``plain_cpu_s``), alternating which goes first."""
    h: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    for i in range(repeats):
        if i % 2 == 0:
            h.append(_timed(harness))
            b.append(_timed(baseline))
        else:
            b.append(_timed(baseline))
            h.append(_timed(harness))
    return {
        "harness_s": statistics.median(t[0] for t in h),
        "plain_s": statistics.median(t[0] for t in b),
        "harness_cpu_s": statistics.median(t[1] for t in h),
        "plain_cpu_s": statistics.median(t[1] for t in b),
    }


def interleaved(
    harness: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median wall seconds of (harness, baseline), alternating which goes first."""
    timings = interleaved_timings(harness, baseline, repeats)
    return timings["harness_s"], timings["plain_s"]


def mnist_or_synthetic(
    samples: int, test_samples: int, data_dir: Path | None = None
) -> tuple[Data, str]:
    """The first ``samples`` training and ``test_samples`` test images of MNIST, loaded
    by the harness's ``mnist`` plugin from ``data_dir`` (default ``$BENCH_DATA_DIR``,
    else ``../shared/data``) if its files are there (never downloaded), else synthetic
    ones; and which it is ("mnist" or "synthetic")."""
    if data_dir is None:
        data_dir = Path(os.environ.get("BENCH_DATA_DIR") or REPO.parent / "shared" / "data")
    if (Path(data_dir) / "MNIST" / "raw").is_dir():
        mnist = get_registry().create("dataset", "mnist", {}).load(Path(data_dir))
        if samples <= mnist.train_x.shape[0] and test_samples <= mnist.test_x.shape[0]:
            return (
                mnist.replace(
                    train_x=mnist.train_x[:samples].clone(),
                    train_y=mnist.train_y[:samples].clone(),
                    test_x=mnist.test_x[:test_samples].clone(),
                    test_y=mnist.test_y[:test_samples].clone(),
                ),
                "mnist",
            )
    return synthetic_data(samples, test_samples), "synthetic"


def measure_overhead(
    alphas: Sequence[float] = (0.5, 1.0, 2.0),
    repeats: int = 3,
    *,
    samples: int = 12_000,
    test_samples: int = 2_000,
    data: Data | None = None,
) -> list[dict]:
    """The harness against a plain PyTorch loop, per compressednet width α: one training
    epoch (with its test evaluation) and the test evaluation alone.

    Each α gets a freshly built, identically initialised model per side and one untimed
    warm-up epoch each; then ``repeats`` interleaved timings. ``samples``/``test_samples``
    (6:1, as MNIST's 60k/10k) size :func:`mnist_or_synthetic`'s data unless ``data`` is
    given. Returns one dict per (α, comparison): ``name``, median ``harness_s`` and
    ``plain_s`` (wall), ``harness_cpu_s`` and ``plain_cpu_s`` (CPU time of the process),
    ``alpha``, ``samples``, ``data`` ("mnist"/"synthetic"/"given").
    """
    source = "given"
    if data is None:
        data, source = mnist_or_synthetic(samples, test_samples)
    results = []
    for alpha in alphas:
        pair = EpochPair(0, width=float(alpha), data=data)
        pair.harness()  # warm-up: first-call costs (allocator, oneDNN kernels) untimed
        pair.plain()
        epoch = interleaved_timings(pair.harness, pair.plain, repeats)
        model, ctx = pair.harness_model, pair.ctx
        evaluation = interleaved_timings(
            lambda m=model, c=ctx: c.evaluate(m),
            lambda m=model, d=data: plain_evaluate(m, d),
            repeats,
        )
        n, n_test = data.train_x.shape[0], data.test_x.shape[0]
        for what, timings, size in (
            ("training epoch", epoch, f"{n:,} + test {n_test:,}"),
            ("test evaluation", evaluation, f"{n_test:,}"),
        ):
            results.append(
                {
                    "name": f"{what} α={alpha:g} ({source} {size} images)",
                    **timings,
                    "alpha": float(alpha),
                    "samples": n if what == "training epoch" else n_test,
                    "data": source,
                }
            )
    return results


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.3f} s"


def _row_name(what: str, size: int, alpha: float) -> str:
    # α = 1 keeps the name the comparison had before it covered other widths
    return f"{what}[{size}]" if alpha == 1.0 else f"{what}[{size},alpha={alpha:g}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed pairs per comparison")
    parser.add_argument("--samples", type=int, default=12_000, help="training images per epoch")
    parser.add_argument(
        "--test-samples", type=int, default=None, help="test images (default: samples / 6)"
    )
    parser.add_argument(
        "--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.0], help="compressednet widths"
    )
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
        help="exit 1 if a training-loop harness/plain ratio exceeds this",
    )
    args = parser.parse_args(argv)
    test_samples = args.test_samples or max(1, args.samples // 6)
    if args.repeats < 1 or args.samples < 1 or args.images < 1 or test_samples < 1:
        parser.error("--repeats, --samples, --test-samples and --images must be >= 1")
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    # (name, baseline, harness s, baseline s, harness CPU s, baseline CPU s)
    rows: list[tuple[str, str, float, float, float, float]] = []
    train_rows = []
    data, source = mnist_or_synthetic(args.samples, test_samples)
    for result in measure_overhead(args.alphas, args.repeats, data=data):
        what = "training_epoch" if result["name"].startswith("training") else "evaluation"
        name = _row_name(what, result["samples"], result["alpha"])
        baseline = "plain_pytorch" if what == "training_epoch" else "plain_no_grad"
        rows.append(
            (name, baseline, result["harness_s"], result["plain_s"])
            + (result["harness_cpu_s"], result["plain_cpu_s"])
        )
        if what == "training_epoch":
            train_rows.append(rows[-1])

    # DCT transform vs the float64 SciPy reference.
    dct_data = synthetic_data(args.images, 0)
    x64 = dct_data.train_x.numpy().astype(np.float64)
    for selection in ("magnitude", "lowfreq"):
        transform = get_registry().create(
            "transform", "dct", {"ratio": DCT_RATIO, "selection": selection}
        )
        k = transform.kept(28, 28)
        transform.apply(synthetic_data(16, 0))
        scipy_dct_reference(x64[:16], k, selection)
        t = interleaved_timings(
            lambda t=transform: t.apply(dct_data),
            lambda s=selection, k=k: scipy_dct_reference(x64, k, s),
            args.repeats,
        )
        rows.append(
            (f"dct_{selection}[{args.images}]", "scipy_float64", t["harness_s"], t["plain_s"])
            + (t["harness_cpu_s"], t["plain_cpu_s"])
        )

    print(
        f"benchharness vs baselines: medians of {args.repeats} interleaved repeat(s); "
        f"{source} training images; torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s), "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    width = max(len(name) for name, *_ in rows)
    print(
        f"{'comparison':<{width}}  {'baseline':<14} {'harness':>11} {'baseline':>11} "
        f"{'ratio':>7} {'CPU ratio':>9}"
    )
    for name, baseline, hs, bs, hc, bc in rows:
        print(
            f"{name:<{width}}  {baseline:<14} {_seconds(hs):>11} {_seconds(bs):>11} "
            f"{hs / bs:>7.3f} {hc / bc:>9.3f}"
        )
    for name, baseline, hs, bs, *_ in rows:
        print(f"RATIO {name} harness/{baseline} = {hs / bs:.3f}")

    worst = max(hs / bs for _, _, hs, bs, *_ in train_rows)
    if args.max_ratio is not None and worst > args.max_ratio:
        print(
            f"training-loop ratio {worst:.3f} exceeds --max-ratio {args.max_ratio}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
