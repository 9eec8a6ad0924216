"""The ``dct`` transform on all 70k MNIST images against plain baselines.

    BENCH_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/dct_transform.py

Prints, per (selection, ratio): the best of ``--repeat`` interleaved runs of the
harness transform (training and test split, as a job applies it) and of the float64
SciPy reference (``scipy.fft.dctn`` over all images at once, the same coefficient
selection with NumPy, ``scipy.fft.idctn``: ``compare_baseline.scipy_dct_reference``),
the ratio, and the plain per-image script (the reference called one image at a time),
timed on ``--loop-images`` images and scaled to all 70k. Then the on-disk cache
(``benchharness.transform_cache``): the seconds to store the transformed dataset and
to load it back (checksum verified), which a later run pays instead of the transform.
Torch is limited to ``--threads`` (default 2). :func:`measure_dct` returns the rows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchharness import transform_cache  # noqa: E402
from benchharness.api import Data  # noqa: E402
from benchharness.plugins import get_registry  # noqa: E402
from benchmarks.compare_baseline import scipy_dct_reference  # noqa: E402


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_dct(
    data: Data,
    *,
    ratios: tuple[float, ...] = (0.1, 0.5),
    selections: tuple[str, ...] = ("magnitude", "lowfreq"),
    repeat: int = 5,
    loop_images: int = 2000,
    reference: bool = True,
) -> list[dict]:
    """Per (selection, ratio): ``harness_s`` (best of ``repeat``), ``scipy_s`` (float64
    SciPy over all images, best of ``repeat`` interleaved with the harness; ``None`` if
    not ``reference``), ``loop_s`` (per-image SciPy on ``loop_images`` images, scaled to
    all; ``None`` if 0), ``images``."""
    images = data.train_x.shape[0] + data.test_x.shape[0]
    x64 = torch.cat([data.train_x, data.test_x]).double().numpy() if reference else None
    rows = []
    for selection in selections:
        for ratio in ratios:
            transform = get_registry().create(
                "transform", "dct", {"ratio": ratio, "selection": selection}
            )
            k = transform.kept(*data.input_shape[-2:])
            # One untimed full run: the first large run in a process measured 2–3×
            # slower (page faults, thread-pool start), whichever row came first.
            transform.apply(data)
            harness, scipy_s = [], []
            for _ in range(repeat):  # interleaved: load changes hit both alike
                harness.append(_seconds(lambda t=transform: t.apply(data)))
                if x64 is not None:
                    scipy_s.append(
                        _seconds(lambda k=k, s=selection: scipy_dct_reference(x64, k, s))
                    )
            loop = None
            if loop_images:
                sample = data.train_x[:loop_images].double().numpy()

                def per_image(sample=sample, k=k, s=selection) -> None:
                    for i in range(sample.shape[0]):
                        scipy_dct_reference(sample[i : i + 1], k, s)

                loop = _seconds(per_image) * images / sample.shape[0]
            rows.append(
                {
                    "name": f"dct {selection} β={ratio:g} ({images:,} images)",
                    "selection": selection,
                    "ratio": ratio,
                    "images": images,
                    "harness_s": min(harness),
                    "scipy_s": min(scipy_s) if scipy_s else None,
                    "loop_s": loop,
                }
            )
    return rows


def measure_disk_cache(data: Data, repeat: int = 3) -> dict:
    """Seconds to store ``data`` transformed (dct magnitude, β = 0.5) as a cache entry
    and to load it back with its checksum verified (best of ``repeat``), and its MiB."""
    transformed = get_registry().create("transform", "dct", {"ratio": 0.5}).apply(data)
    with tempfile.TemporaryDirectory() as tmp:
        stores, loads = [], []
        for i in range(repeat):
            key = f"benchmark{i}"
            path = transform_cache.entry_path(Path(tmp), key)
            path.parent.mkdir(parents=True, exist_ok=True)
            stores.append(_seconds(lambda p=path, k=key: transform_cache.store(p, k, transformed)))
            start = time.perf_counter()
            loaded = transform_cache.load_or_compute(Path(tmp), key, data, lambda: data)
            loads.append(time.perf_counter() - start)
            assert torch.equal(loaded.train_x, transformed.train_x)
        size = path.stat().st_size / 2**20
    return {"store_s": min(stores), "load_s": min(loads), "entry_mib": size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument(
        "--loop-images",
        type=int,
        default=2000,
        help="images the per-image loop runs on; its time is scaled to all images (0 skips it)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data_dir = Path(os.environ.get("BENCH_DATA_DIR", "data"))
    data = get_registry().create("dataset", "mnist", {}).load(data_dir)
    images = data.train_x.shape[0] + data.test_x.shape[0]
    print(
        f"{images} MNIST images, torch threads = {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"{'selection':>9} {'ratio':>5} {'harness s':>9} {'scipy f64 s':>11} {'ratio':>6}"
        f" {'per-image s*':>12} {'ratio':>6}"
    )
    rows = measure_dct(
        data, ratios=tuple(args.ratios), repeat=args.repeat, loop_images=args.loop_images
    )
    for row in rows:
        line = f"{row['selection']:>9} {row['ratio']:>5} {row['harness_s']:9.3f}"
        line += f" {row['scipy_s']:11.3f} {row['scipy_s'] / row['harness_s']:5.2f}×"
        if row["loop_s"] is not None:
            line += f" {row['loop_s']:12.3f} {row['loop_s'] / row['harness_s']:5.1f}×"
        print(line, flush=True)
    if args.loop_images:
        print(f"* timed on {min(args.loop_images, images)} images, scaled to {images}")
    cache = measure_disk_cache(data)
    print(
        f"disk cache (magnitude, ratio 0.5; {cache['entry_mib']:.0f} MiB): store "
        f"{cache['store_s']:.3f} s, load + checksum {cache['load_s']:.3f} s"
    )


if __name__ == "__main__":
    main()
