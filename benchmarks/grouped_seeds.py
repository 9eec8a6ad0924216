#!/usr/bin/env python
"""Seeds trained together (the ``benchharness.grouped`` engine) against the plain
baseline of training them one after another, with speed and accuracy side by side.

For each width α and precision, in one process:

1. **Speed.** ``--members`` CompressedNets (one per seed) train ``--steps`` SGD steps
   each (batch ``--batch-size``, momentum 0.9, each its own data order): one after
   another in a plain PyTorch loop (``sequential``), and fused by the engine in the
   plain (``fused``) and channels-last (``fused_cl``) layouts. The variants alternate,
   in rotating order, for ``--repeats`` rounds; the table shows medians per step and the
   speed-up sequential/fused (> 1: fused is faster), also against sequential fp32.
2. **Accuracy.** The same members train ``--epochs`` epochs on ``--train`` MNIST images
   both ways (fused: the faster layout) and are tested on ``--test`` images: mean ± sd
   test accuracy over the seeds, the largest per-seed accuracy difference, and the
   epoch wall times.
3. **Probe.** What :func:`benchharness.grouped.probe.decide` (the executor's switch)
   decides for that configuration, with its own measured ratio.

Ends with one ``RATIO grouped_seeds[alpha=..,precision=..] sequential/fused = x`` line per
configuration (the best fused layout, against sequential at the same precision).
Timings on a shared machine are noisy: compare ratios from one run, not across runs.

    .venv/bin/python benchmarks/grouped_seeds.py                       # defaults below
    .venv/bin/python benchmarks/grouped_seeds.py --alphas 0.5 --precisions bf16 --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from benchharness.allocator import retain_freed_memory  # noqa: E402
from benchharness.api import Data  # noqa: E402
from benchharness.grouped import (  # noqa: E402
    MemberRun,
    autocast,
    evaluate_members,
    fuse,
    train_fused,
)
from benchharness.grouped.probe import decide  # noqa: E402
from benchharness.plugins import get_registry  # noqa: E402

LR, MOMENTUM = 0.05, 0.9
ModelFactory = Callable[[], nn.Module]


def load_data(data_dir: str | None, n_train: int, n_test: int) -> tuple[Data, str]:
    """MNIST subsets from the data directory, or synthetic images when it has none."""
    path = Path(
        data_dir
        or os.environ.get("BENCH_DATA_DIR")
        or Path(__file__).parents[2] / "shared" / "data"
    )
    if (path / "MNIST" / "raw").is_dir():
        from benchharness_plugins.datasets import MNIST

        d = MNIST().load(path)
        return Data(
            d.train_x[:n_train], d.train_y[:n_train], d.test_x[:n_test], d.test_y[:n_test], 10
        ), "MNIST"
    from benchmarks import synthetic_data

    return synthetic_data(n_train, n_test), "synthetic"


def build(alpha: float, seeds: list[int], factory: ModelFactory | None = None) -> list[nn.Module]:
    """One model per seed, each built after ``torch.manual_seed(seed)`` (as a job's is):
    CompressedNet(α) by default, or ``factory()`` (e.g. a model plugin's ``build``)."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        if factory is None:
            plugin = get_registry().create("model", "compressednet", {"width": alpha})
            models.append(plugin.build((1, 28, 28), 10))
        else:
            models.append(factory())
    return models


def train_sequential(models, data: Data, seeds, epochs, batch_size, precision) -> None:
    """The plain baseline: each model alone, its own generator's order, one after another."""
    device = torch.device("cpu")
    n = data.train_x.shape[0]
    for model, seed in zip(models, seeds, strict=True):
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                with autocast(precision, device):
                    out = model(data.train_x[idx])
                loss = F.cross_entropy(out.float(), data.train_y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()


def train_together(fused, data: Data, seeds, epochs, batch_size, precision):
    """Train ``fused`` (``fuse(models)`` in either layout) in place, as the executor would;
    returns it."""
    runs = [
        MemberRun(
            data.train_x, data.train_y, torch.Generator().manual_seed(s), lambda e: LR, MOMENTUM
        )
        for s in seeds
    ]
    train_fused(fused, runs, epochs=epochs, batch_size=batch_size, precision=precision)
    return fused


@torch.no_grad()
def accuracy(model: nn.Module, data: Data) -> float:
    model.eval()
    return float((model(data.test_x).argmax(1) == data.test_y).float().mean())


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def speed(
    alpha: float,
    precision: str,
    data: Data,
    seeds: list[int],
    *,
    steps: int = 10,
    repeats: int = 3,
    batch_size: int = 128,
    variants: tuple[str, ...] = ("sequential", "fused", "fused_cl"),
    factory: ModelFactory | None = None,
) -> dict[str, float]:
    """Median seconds per step (every member one step) of each of ``variants``:
    ``sequential`` (the members one after another, each alone), ``fused`` (plain layout),
    ``fused_cl`` (channels-last), in ``repeats`` interleaved rounds of ``steps`` steps
    after one untimed warm-up of each."""
    n = steps * batch_size
    part = data.replace(train_x=data.train_x[:n], train_y=data.train_y[:n])
    models = build(alpha, seeds, factory)
    # (set-up, timed run): what a study does once per job or group — copying the models,
    # fusing them (~20 ms: the chains are traced) — is set up untimed, afresh each round
    runs = {
        "sequential": (
            lambda: copy.deepcopy(models),
            lambda ms: train_sequential(ms, part, seeds, 1, batch_size, precision),
        ),
        "fused": (
            lambda: fuse(models),
            lambda f: train_together(f, part, seeds, 1, batch_size, precision),
        ),
        "fused_cl": (
            lambda: fuse(models).use_channels_last(True),
            lambda f: train_together(f, part, seeds, 1, batch_size, precision),
        ),
    }
    chosen = {k: runs[k] for k in variants}
    for prepare, run in chosen.values():  # warm-up
        run(prepare())
    times: dict[str, list[float]] = {k: [] for k in chosen}
    names = list(chosen)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            prepare, run = chosen[name]
            state = prepare()
            times[name].append(_timed(lambda run=run, state=state: run(state)) / steps)
    return {k: statistics.median(v) for k, v in times.items()}


def quality(
    alpha: float,
    precision: str,
    data: Data,
    seeds: list[int],
    *,
    epochs: int,
    batch_size: int,
    channels_last: bool,
) -> dict[str, object]:
    """Test accuracies after ``epochs`` epochs both ways, and the epochs' wall times."""
    models = build(alpha, seeds)
    plain = copy.deepcopy(models)
    t_seq = _timed(lambda: train_sequential(plain, data, seeds, epochs, batch_size, precision))
    fused = fuse(models).use_channels_last(channels_last)
    t_fused = _timed(lambda: train_together(fused, data, seeds, epochs, batch_size, precision))
    seq_acc = [accuracy(m, data) for m in plain]
    fused_acc = [e.accuracy for e in evaluate_members(fused, data.test_x, data.test_y, 1000)]
    return {
        "seq_acc": seq_acc,
        "fused_acc": fused_acc,
        "seq_epoch": t_seq / epochs,
        "fused_epoch": t_fused / epochs,
    }


def fused_accuracy(
    alpha: float,
    precision: str,
    data: Data,
    seeds: list[int],
    *,
    epochs: int,
    batch_size: int = 128,
    channels_last: bool = True,
) -> tuple[float, list[float]]:
    """Seconds to train one fused model of ``seeds`` for ``epochs`` epochs under
    ``precision`` (warm-up excluded), and each member's test accuracy after it (the
    evaluation runs in fp32)."""
    warm = data.replace(
        train_x=data.train_x[: 2 * batch_size], train_y=data.train_y[: 2 * batch_size]
    )
    warm_fused = fuse(build(alpha, seeds)).use_channels_last(channels_last)
    train_together(warm_fused, warm, seeds, 1, batch_size, precision)
    fused = fuse(build(alpha, seeds)).use_channels_last(channels_last)
    seconds = _timed(lambda: train_together(fused, data, seeds, epochs, batch_size, precision))
    evaluations = evaluate_members(fused, data.test_x, data.test_y, 1000)
    return seconds, [e.accuracy for e in evaluations]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _mean_sd(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f}±{sd:.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alphas", default="0.5,1,2", help="CompressedNet widths, comma list")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32|bf16|fp16")
    parser.add_argument("--members", type=int, default=5, help="seeds trained together")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repetition")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--train", type=int, default=6000, help="training images (accuracy)")
    parser.add_argument("--test", type=int, default=2000, help="test images (accuracy)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the accuracy runs")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--data-dir", default=None, help="holds MNIST/raw (else synthetic)")
    parser.add_argument("--no-probe", action="store_true", help="skip the executor's probe")
    parser.add_argument(
        "--no-malloc-tuning",
        action="store_true",
        help="leave glibc's allocator as it is (train_fused sets it for the whole process "
        "otherwise; set here up front, it serves both sides alike)",
    )
    args = parser.parse_args(argv)
    if args.no_malloc_tuning:
        os.environ["BENCH_MALLOC_TUNING"] = "0"
    tuned = retain_freed_memory()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    alphas = [float(a) for a in args.alphas.split(",")]
    precisions = args.precisions.split(",")
    seeds = list(range(args.members))
    data, source = load_data(args.data_dir, args.train, args.test)

    print(
        f"grouped seeds: {args.members} CompressedNets, batch {args.batch_size}, SGD lr {LR} "
        f"momentum {MOMENTUM}; torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.1f} at start; "
        f"allocator keeps freed memory: {'yes' if tuned else 'no'} (both sides)"
    )
    print(
        f"speed: median ms per step (all members) of {args.repeats} interleaved rounds of "
        f"{args.steps} steps; accuracy: {args.epochs} epoch(s) on {len(data.train_y)} "
        f"{source} images, tested on {len(data.test_y)}. Shared machine: timings are noisy."
    )
    header = (
        f"{'alpha':>5} {'prec':>4} | {'seq':>7} {'fused':>7} {'fusedCL':>7} | "
        f"{'x fused':>7} {'x CL':>6} {'x vs fp32':>9} | {'seq acc':>15} {'fused acc':>15} "
        f"{'max|Δ|':>6} | {'seq s/ep':>8} {'fus s/ep':>8} {'x':>5} | probe"
    )
    print(header)
    print("-" * len(header))
    ratios = []
    seq_fp32: dict[float, float] = {}
    for alpha in alphas:
        for precision in precisions:
            t = speed(
                alpha, precision, data, seeds,
                steps=args.steps, repeats=args.repeats, batch_size=args.batch_size,
            )  # fmt: skip
            if precision == "fp32":
                seq_fp32[alpha] = t["sequential"]
            best = min(t["fused"], t["fused_cl"])
            channels_last = t["fused_cl"] <= t["fused"]
            q = quality(
                alpha, precision, data, seeds,
                epochs=args.epochs, batch_size=args.batch_size, channels_last=channels_last,
            )  # fmt: skip
            probe = "skipped"
            if not args.no_probe:
                d = decide(build(alpha, seeds), data.train_x, data.train_y,
                           batch_size=args.batch_size, precision=precision)  # fmt: skip
                probe = f"{'fuse' if d.fuse else 'alone'} ({d.ratio:.2f}x)"
            vs32 = seq_fp32.get(alpha)
            diff = max(abs(a - b) for a, b in zip(q["seq_acc"], q["fused_acc"], strict=True))
            print(
                f"{alpha:>5g} {precision:>4} | {_ms(t['sequential']):>7} {_ms(t['fused']):>7} "
                f"{_ms(t['fused_cl']):>7} | {t['sequential'] / t['fused']:>7.2f} "
                f"{t['sequential'] / t['fused_cl']:>6.2f} "
                f"{(vs32 / best if vs32 else float('nan')):>9.2f} | "
                f"{_mean_sd(q['seq_acc']):>15} {_mean_sd(q['fused_acc']):>15} {diff:>6.4f} | "
                f"{q['seq_epoch']:>8.2f} {q['fused_epoch']:>8.2f} "
                f"{q['seq_epoch'] / q['fused_epoch']:>5.2f} | {probe}",
                flush=True,
            )
            ratios.append((alpha, precision, t["sequential"] / best))
    for alpha, precision, ratio in ratios:
        print(
            f"RATIO grouped_seeds[alpha={alpha:g},precision={precision}] "
            f"sequential/fused = {ratio:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
