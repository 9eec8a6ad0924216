"""The speed table's sections: each measures one figure of issue 9 against a plain
baseline in the same process (or subprocesses it starts) and returns its rows.

Every section takes the run's :class:`Scale` (``--quick`` or full) and the data
directory; :func:`benchmarks.speed_rows.guarded` turns an exception into an error row.
Sections that come from other benchmark scripts import them inside the function, so a
missing or broken script only fails its own rows.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.speed_rows import Row, fmt_hours, fmt_mib, fmt_seconds, mean_se, rows_from_dicts

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "specs" / "mnist_width_dct.toml"


@dataclasses.dataclass(frozen=True)
class Scale:
    """How much each section measures."""

    repeats: int  # timed rounds (medians / best of)
    steps: int  # training steps per timed round
    precision_train: int  # MNIST images of the bf16-vs-fp32 accuracy runs
    precision_epochs: int
    precision_seeds: int
    report_runs: tuple[int, ...]
    loop_images: int  # images the per-image DCT reference runs on (scaled to all)
    rss_overrides: tuple[str, ...]  # --set options of the quick study run (peak RSS)


QUICK = Scale(2, 4, 5000, 1, 3, (10_000, 100_000), 2000,
              ("optimizer.epochs=1", "data.train_subset=2000", "data.test_subset=2000",
               "measure.latency=false"))  # fmt: skip
FULL = Scale(3, 10, 10_000, 2, 3, (10_000, 100_000), 10_000, ())


def load_mnist(data_dir: Path):
    from benchharness.plugins import get_registry

    return get_registry().create("dataset", "mnist", {}).load(data_dir)


# --- harness vs plain loop (w3's compare_baseline.measure_overhead) ---------------------


def overhead(scale: Scale, data_dir: Path) -> list[Row]:
    from benchmarks.compare_baseline import measure_overhead  # absent before w3's merge

    results = measure_overhead([0.5, 1.0, 2.0], scale.repeats)
    return rows_from_dicts("overhead", results, target="≥ 1.00×")


# --- seeds trained together --------------------------------------------------------------


def grouped(scale: Scale, data_dir: Path) -> list[Row]:
    from benchharness.api import Data
    from benchmarks.grouped_seeds import speed

    mnist = load_mnist(data_dir)
    n = scale.steps * 128
    data = Data(mnist.train_x[:n], mnist.train_y[:n], mnist.test_x[:0], mnist.test_y[:0], 10)
    rows, seq_fp32 = [], {}
    for alpha, target in ((0.5, "≥ 2×"), (1.0, "≥ 1.5×")):
        for precision in ("fp32", "bf16"):
            t = speed(alpha, precision, data, list(range(5)), steps=scale.steps,
                      repeats=scale.repeats, batch_size=128)  # fmt: skip
            best = min(t["fused"], t["fused_cl"])
            layout = "channels-last" if t["fused_cl"] <= t["fused"] else "plain"
            if precision == "fp32":
                seq_fp32[alpha] = t["sequential"]
            note = f"per step of all 5; fused {layout} layout"
            if precision != "fp32":
                note += f"; vs sequential fp32: {seq_fp32[alpha] / best:.2f}×"
            rows.append(
                Row("grouped seeds", f"5 seeds fused vs one after another, α={alpha:g} "
                    f"{precision}", fmt_seconds(best), fmt_seconds(t["sequential"]),
                    t["sequential"] / best, target, note)
            )  # fmt: skip
    return rows


# --- bf16 vs fp32: speed and accuracy over seeds -----------------------------------------


def precision(scale: Scale, data_dir: Path) -> list[Row]:
    from benchharness.api import Data
    from benchmarks.grouped_seeds import fused_accuracy

    mnist = load_mnist(data_dir)
    n = scale.precision_train
    data = Data(mnist.train_x[:n], mnist.train_y[:n], mnist.test_x, mnist.test_y, 10)
    seeds = list(range(scale.precision_seeds))
    runs = {
        p: fused_accuracy(0.5, p, data, seeds, epochs=scale.precision_epochs)
        for p in ("fp32", "bf16")
    }
    what = (f"CompressedNet α=0.5, {len(seeds)} seeds × {scale.precision_epochs} epoch(s) "
            f"on {n} MNIST images, fused engine")  # fmt: skip
    (t32, acc32), (t16, acc16) = runs["fp32"], runs["bf16"]
    return [
        Row("precision", "bf16 vs fp32 training time", fmt_seconds(t16), fmt_seconds(t32),
            t32 / t16, "> 1×", what),
        Row("precision", "bf16 vs fp32 test accuracy (mean ± SE over seeds)", mean_se(acc16),
            mean_se(acc32), None, "≈ equal", "10,000 test images"),
    ]  # fmt: skip


# --- reports ------------------------------------------------------------------------------


def reports(scale: Scale, data_dir: Path) -> list[Row]:
    from benchmarks.report_front import measure_report

    with tempfile.TemporaryDirectory(prefix="speed-table-report-") as folder:
        results = measure_report(list(scale.report_runs), Path(folder), scale.repeats)
    rows = []
    for r in results:
        k = r["objectives"].count(",") + 1
        rows.append(
            Row("report", f"bench report --pareto, {r['runs']:,} runs, {k} objectives",
                fmt_seconds(r["seconds"]), fmt_seconds(r["plain_seconds"]),
                r["plain_seconds"] / r["seconds"], "≤ 0.1 s" if k == 2 else "≤ 1 s",
                f"baseline: plain GROUP BY means, no front; front {r['front']} configs")
        )  # fmt: skip
    return rows


# --- start-up (w1's benchmarks.startup.measure_startup) ------------------------------------


def startup(scale: Scale, data_dir: Path) -> list[Row]:
    from benchmarks.startup import measure_startup  # absent before w1's merge

    return startup_rows(measure_startup(max(scale.repeats, 3)))


def startup_rows(results: list[dict]) -> list[Row]:
    """Rows of ``measure_startup``'s dicts (``command``, ``median_s``, ``imports_torch``),
    each against its ``python -c "import torch"`` entry (the baseline every command paid
    before start-up was made torch-free)."""
    baseline = next(
        (r["median_s"] for r in results if "import torch" in str(r.get("command", ""))), None
    )
    rows = rows_from_dicts("start-up", results, target="≤ 0.3 s")
    out = []
    for row, r in zip(rows, results, strict=True):
        torch_note = {True: "imports torch", False: "no torch"}.get(r.get("imports_torch"), "")
        if baseline is not None and r.get("median_s"):
            row = dataclasses.replace(row, baseline=fmt_seconds(baseline),
                                      ratio=baseline / r["median_s"])  # fmt: skip
        target = row.target if r.get("imports_torch") is not None else ""  # not a baseline
        out.append(dataclasses.replace(row, note=torch_note, target=target))
    return out


# --- DCT of all 70k MNIST images -----------------------------------------------------------


def per_image_dct(x, k: int, selection: str):
    """The straightforward script: image by image, float64 SciPy DCT-II (orthonormal),
    keep k coefficients (largest |c|, or the first k in zig-zag order), inverse DCT.
    ``x``: an (n, …, h, w) float64 NumPy array; returns the reconstructions."""
    import numpy as np
    import scipy.fft

    from benchmarks.compare_baseline import _zigzag_mask

    h, w = x.shape[-2:]
    low = _zigzag_mask(h, w, k).reshape(h, w)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        coef = scipy.fft.dctn(x[i], type=2, norm="ortho", axes=(-2, -1))
        if selection == "lowfreq":
            kept = coef * low
        else:
            flat = coef.reshape(-1)
            idx = np.argpartition(-np.abs(flat), k - 1)[:k]
            kept = np.zeros_like(flat)
            kept[idx] = flat[idx]
            kept = kept.reshape(coef.shape)
        out[i] = scipy.fft.idctn(kept, type=2, norm="ortho", axes=(-2, -1))
    return out


def dct(scale: Scale, data_dir: Path) -> list[Row]:
    from benchharness.plugins import get_registry

    mnist = load_mnist(data_dir)
    total = mnist.train_x.shape[0] + mnist.test_x.shape[0]
    sample = mnist.train_x[: scale.loop_images].double().numpy()
    rows = []
    for selection in ("magnitude", "lowfreq"):
        for ratio in (0.1, 0.5):
            transform = get_registry().create(
                "transform", "dct", {"ratio": ratio, "selection": selection}
            )
            k = transform.kept(28, 28)
            transform.apply(mnist)  # untimed: the first large run pays page faults
            harness = min(
                _seconds(lambda t=transform: t.apply(mnist)) for _ in range(scale.repeats)
            )
            loop = _seconds(lambda k=k, s=selection: per_image_dct(sample, k, s))
            loop *= total / sample.shape[0]
            rows.append(
                Row("DCT", f"{total:,} MNIST images, {selection}, β={ratio:g}",
                    fmt_seconds(harness), fmt_seconds(loop), loop / harness, "≤ 0.5 s",
                    f"baseline: scipy.fft.dctn float64 per image, {sample.shape[0]:,} "
                    f"timed, scaled to {total:,}")
            )  # fmt: skip
    return rows


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- projected wall time of the full study ---------------------------------------------------


def project_study(spec: Path, data_dir: Path, *, steps: int, repeats: int) -> dict[str, float]:
    """Projected seconds of ``spec``'s full study: ``sequential`` (every job alone, fp32),
    ``grouped_fp32`` and ``grouped_bf16`` (``group_jobs``' groups, fused where faster),
    with the counts ``jobs``, ``shapes`` and ``groups``. Steps are timed with torch's
    current thread count T; with T below the core count C, ``workers`` = C // T jobs run
    side by side (``--devices cpu,cpu``), so the sum is divided by it (no contention
    between them assumed)."""
    from benchharness.grouped.grouping import group_jobs
    from benchharness.plugins import get_registry
    from benchmarks.study_projection import measure_costs, project_seconds, study_work

    registry = get_registry()
    jobs, work, shapes = study_work(spec, data_dir, registry)
    alone = [[work[j.id]] for j in jobs]
    together = [[work[j.id] for j in g] for g in group_jobs(jobs)]
    members: dict[str, set[int]] = {}
    for g in together:
        members.setdefault(g[0].shape, set()).add(len(g))
    costs = {
        p: measure_costs(shapes, members, registry, precision=p, steps=steps, repeats=repeats)
        for p in ("fp32", "bf16")
    }
    import torch

    workers = max(1, (os.cpu_count() or 1) // torch.get_num_threads())
    return {
        "sequential": project_seconds(alone, costs["fp32"]) / workers,
        "grouped_fp32": project_seconds(together, costs["fp32"]) / workers,
        "grouped_bf16": project_seconds(together, costs["bf16"]) / workers,
        "jobs": len(jobs),
        "shapes": len(shapes),
        "groups": len(together),
        "workers": workers,
    }


def projection(scale: Scale, data_dir: Path) -> list[Row]:
    p = project_study(STUDY, data_dir, steps=scale.steps, repeats=scale.repeats)
    seq = p["sequential"]
    what = (f"{p['jobs']} jobs, {p['shapes']} model shapes, {p['groups']} groups; training + "
            f"per-epoch evaluation, {scale.steps} steps timed per shape; "
            f"{p['workers']} worker(s) side by side")  # fmt: skip
    return [
        Row("full study", "mnist_width_dct, jobs one after another, fp32", fmt_hours(seq),
            fmt_hours(seq), 1.0, "≤ 1 h", what),
        Row("full study", "mnist_width_dct, seeds grouped, fp32", fmt_hours(p["grouped_fp32"]),
            fmt_hours(seq), seq / p["grouped_fp32"], "≤ 1 h",
            "groups fused only where faster, as the probe decides"),
        Row("full study", "mnist_width_dct, seeds grouped, bf16", fmt_hours(p["grouped_bf16"]),
            fmt_hours(seq), seq / p["grouped_bf16"], "≤ 1 h", "same groups under bf16 autocast"),
    ]  # fmt: skip


# --- the workers' allocator setting against glibc's defaults -----------------------------


def allocator(scale: Scale, data_dir: Path) -> list[Row]:
    from benchmarks.allocator_effect import measure_allocator

    return [
        Row("allocator", f"training step alone, α={r['alpha']:g}, worker setting vs glibc "
            "defaults", fmt_seconds(r["seconds"]), fmt_seconds(r["plain_seconds"]),
            r["plain_seconds"] / r["seconds"], "", "fresh processes, batch 128, fp32")
        for r in measure_allocator([0.5, 1.0, 2.0], scale.repeats, steps=10 * scale.steps)
    ]  # fmt: skip


# --- peak memory of a quick study run ------------------------------------------------------


# Runs the command given as arguments and prints its peak RSS (KiB) and exit code. The
# command is forked from this small launcher, not from the (large) table process: a
# forked child's peak RSS counts the parent's pages it started with, before exec.
_LAUNCHER = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
"""


def _peak_rss_kib(cmd: list[str], env: dict[str, str]) -> tuple[int, float, int]:
    """(peak RSS in KiB of ``cmd`` and the children it waited for, seconds, exit code)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], env=env, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return int(out[-2]), time.perf_counter() - start, int(out[-1])


# The plain baseline: one process holding MNIST once and training one step of the largest
# model (α = 2) of the study.
_PLAIN_SCRIPT = """
import sys
from pathlib import Path
import torch
import torch.nn.functional as F
from benchharness.plugins import get_registry
r = get_registry()
d = r.create("dataset", "mnist", {}).load(Path(sys.argv[1]))
model = r.create("model", "compressednet", {"width": 2.0}).build((1, 28, 28), 10)
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
F.cross_entropy(model(d.train_x[:128]), d.train_y[:128]).backward()
opt.step()
"""


def memory(scale: Scale, data_dir: Path) -> list[Row]:
    env = {**os.environ, "BENCH_DATA_DIR": str(data_dir)}
    sets = [a for s in scale.rss_overrides for a in ("--set", s)]
    bench = Path(sys.executable).with_name("bench")
    with tempfile.TemporaryDirectory(prefix="speed-table-rss-") as folder:
        db = Path(folder) / "bench.duckdb"
        cmd = [str(bench), "run", str(STUDY), "--quick", "--db", str(db), *sets]
        run_kib, seconds, code = _peak_rss_kib(cmd, env)
    plain_kib, _, plain_code = _peak_rss_kib(
        [sys.executable, "-c", _PLAIN_SCRIPT, str(data_dir)], env
    )
    if code != 0 or plain_code != 0:
        raise RuntimeError(f"bench run exit {code}, plain script exit {plain_code}")
    mnist = load_mnist(data_dir)
    dataset_mib = (
        sum(
            t.element_size() * t.nelement()
            for t in (mnist.train_x, mnist.train_y, mnist.test_x, mnist.test_y)
        )
        / 2**20
    )
    from benchharness.matrix import load_jobs
    from benchharness.plugins import get_registry

    jobs = len(load_jobs(STUDY, get_registry(), overrides=scale.rss_overrides, quick=True)[1])
    per_job_mib = plain_kib / 1024 + (jobs - 1) * dataset_mib
    quick = "--quick" + "".join(f" --set {s}" for s in scale.rss_overrides)
    return [
        Row("memory", f"peak RSS, bench run mnist_width_dct {quick} ({jobs} jobs)",
            fmt_mib(run_kib), fmt_mib(plain_kib), plain_kib / run_kib, "dataset once",
            f"baseline: one process: torch, MNIST loaded once, one α=2 training step; run took "
            f"{seconds:.0f} s"),
        Row("memory", "MNIST tensors (70k images, float32)", f"{dataset_mib:.0f} MiB", "",
            None, "", f"held once per job instead, the run would need ≥ {per_job_mib:.0f} MiB"),
    ]  # fmt: skip


SECTIONS = {
    "overhead": overhead,
    "allocator": allocator,
    "grouped": grouped,
    "precision": precision,
    "report": reports,
    "startup": startup,
    "dct": dct,
    "projection": projection,
    "memory": memory,
}
