#!/usr/bin/env python
"""One command, one table: how fast the current checkout is, each figure beside a plain
baseline measured in the same run (issue 9).

    BENCH_DATA_DIR=/work/shared/data .venv/bin/python benchmarks/speed_table.py --quick
    .venv/bin/python benchmarks/speed_table.py                     # full: ≤ 15 min idle
    .venv/bin/python benchmarks/speed_table.py --only grouped,dct  # some sections

Prints the machine (CPU, cores, torch, load average), then a markdown table, row by row
as each section finishes: harness vs a plain PyTorch loop (training epoch, evaluation),
seeds trained fused vs one after another, bf16 vs fp32 (speed and accuracy over seeds),
``bench report --pareto`` over 10k/100k stored runs, start-up, the DCT of all 70k MNIST
images, the projected wall time of the full ``mnist_width_dct`` study, and the peak RSS
of a quick study run. ``ratio`` is always baseline ÷ harness (> 1: the harness needs less
time or memory). A section that fails prints its error in its row; the others go on.
Timings on a shared machine are noisy: compare ratios from one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchharness.provenance import cpu_name  # noqa: E402
from benchmarks.speed_rows import format_header, format_row, guarded  # noqa: E402
from benchmarks.speed_sections import FULL, QUICK, SECTIONS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """``BENCH_DATA_DIR``, else ``../shared/data`` beside the repository, else
    /work/shared/data."""
    if os.environ.get("BENCH_DATA_DIR"):
        return Path(os.environ["BENCH_DATA_DIR"])
    beside = REPO.parent / "shared" / "data"
    return beside if beside.is_dir() else Path("/work/shared/data")


def machine_line() -> str:
    import torch

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cpu_name()}, {os.cpu_count()} CPU(s), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}, "
        f"load average {load}"
    )


def commit() -> str:
    """The checkout's short commit, ``(modified)`` if tracked files changed."""
    git = ["git", "-C", str(REPO)]
    try:
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        dirty = subprocess.run([*git, "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return head.strip() + (" (modified)" if dirty.strip() else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller measurements (≤ 5 min)")
    parser.add_argument("--only", default=None,
                        help=f"comma list of sections: {','.join(SECTIONS)}")  # fmt: skip
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in this process (default: torch's choice); on a "
                        "shared machine 1 gives far steadier numbers")  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    names = list(SECTIONS) if args.only is None else args.only.split(",")
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(
            f"--only: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}"
        )
    scale = QUICK if args.quick else FULL
    folder = data_dir()
    print(f"# benchharness speed table — commit {commit()}, {'quick' if args.quick else 'full'}")
    print(machine_line())
    print(f"data: {folder}\n")
    print(format_header(), flush=True)
    started = time.perf_counter()
    for name in names:
        t0 = time.perf_counter()
        for row in guarded(name, lambda f=SECTIONS[name]: f(scale, folder)):
            print(format_row(row), flush=True)
        print(f"[{name}: {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f}]",
              file=sys.stderr, flush=True)  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntotal {time.perf_counter() - started:.0f} s; peak RSS of this process {peak:.0f} "
          f"MiB; load average at the end {load}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
