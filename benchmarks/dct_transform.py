"""The ``dct`` transform on all 70k MNIST images against a plain per-image loop.

    BENCH_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/dct_transform.py

Prints, per (selection, ratio): the best of ``--repeat`` interleaved runs of the
harness transform (training and test split, as a job applies it), of the previous
implementation (8192-image chunks, ``(D x) Dᵀ`` products, top-k into fresh zeros) and
of a plain per-image loop (the straightforward script), with the ratios. The loop is
timed once, on ``--loop-images`` images, scaled to all 70k (it runs ~4k images/s).
Torch is limited to ``--threads`` (default 2).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from benchharness.plugins import get_registry
from benchharness_plugins.transforms import dct_matrix, zigzag_order


def _previous(x: torch.Tensor, k: int, selection: str, chunk: int = 8192) -> torch.Tensor:
    """The transform as it was before the cache-sized chunks (reconstruction output)."""
    h, w = x.shape[-2:]
    d_h, d_w = dct_matrix(h, x.dtype), dct_matrix(w, x.dtype)
    low_mask = torch.zeros(h * w, dtype=x.dtype)
    low_mask[zigzag_order(h, w)[:k]] = 1.0
    out = torch.empty_like(x)
    for part, dest in zip(x.split(chunk), out.split(chunk), strict=True):
        coef = (d_h @ part @ d_w.T).reshape(-1, h * w)
        if selection == "lowfreq":
            coef = coef * low_mask
        else:
            idx = coef.abs().topk(k, dim=1, sorted=False).indices
            coef = torch.zeros_like(coef).scatter_(1, idx, coef.gather(1, idx))
        dest.copy_(d_h.T @ coef.reshape(part.shape) @ d_w)
    return out


def _per_image(x: torch.Tensor, k: int, selection: str) -> torch.Tensor:
    """The plain script: one image at a time."""
    h, w = x.shape[-2:]
    d_h, d_w = dct_matrix(h, x.dtype), dct_matrix(w, x.dtype)
    low = zigzag_order(h, w)[:k]
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        coef = (d_h @ x[i] @ d_w.T).reshape(-1)
        idx = low if selection == "lowfreq" else coef.abs().topk(k).indices
        kept = torch.zeros_like(coef)
        kept[idx] = coef[idx]
        out[i] = d_h.T @ kept.reshape(x.shape[1:]) @ d_w
    return out


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument(
        "--loop-images",
        type=int,
        default=7000,
        help="images the per-image loop runs on; its time is scaled to all images (0 skips it)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = get_registry()
    data_dir = Path(os.environ.get("BENCH_DATA_DIR", "data"))
    data = registry.create("dataset", "mnist", {}).load(data_dir)
    images = torch.cat([data.train_x, data.test_x])
    print(f"{images.shape[0]} MNIST images, torch threads = {torch.get_num_threads()}")
    header = f"{'selection':>9} {'ratio':>5} {'harness s':>9} {'previous s':>10} {'ratio':>6}"
    print(header + f" {'per-image s*':>12} {'ratio':>6}")
    for selection in ("magnitude", "lowfreq"):
        for ratio in args.ratios:
            transform = registry.create(
                "transform", "dct", {"ratio": ratio, "selection": selection}
            )
            k = transform.kept(28, 28)
            # One untimed full run of each: the first large run in a process measured
            # 2–3× slower (page faults, thread-pool start), whichever row came first.
            transform.apply(data)
            _previous(images, k, selection)
            now, before = [], []
            for _ in range(args.repeat):  # interleaved: load changes hit both alike
                now.append(_seconds(lambda t=transform: t.apply(data)))
                before.append(_seconds(lambda k=k, s=selection: _previous(images, k, s)))
            line = f"{selection:>9} {ratio:>5} {min(now):9.3f} {min(before):10.3f}"
            line += f" {min(before) / min(now):5.2f}×"
            if args.loop_images:
                subset = images[: args.loop_images]
                loop = _seconds(lambda x=subset, k=k, s=selection: _per_image(x, k, s))
                loop *= images.shape[0] / subset.shape[0]
                line += f" {loop:12.3f} {loop / min(now):5.1f}×"
            print(line, flush=True)


if __name__ == "__main__":
    main()
