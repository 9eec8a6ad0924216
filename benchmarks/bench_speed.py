"""The speed table's ratios (benchmarks/speed_table.py), tracked by asv across commits.

Each ``track_*`` returns baseline ÷ harness measured in one process (> 1: the harness
needs less time), except the study projection, which returns hours. Seeds, bf16 and the
DCT use synthetic images (speed does not depend on the values); the study projection
needs MNIST (``BENCH_DATA_DIR`` or ../shared/data) and is skipped without it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from benchmarks import synthetic_data

# Sizes (module constants so that tests/test_benchmarks.py can shrink them).
MEMBERS = 5
STEPS = 5
REPEATS = 3
REPORT_RUNS = 100_000
REPORT_SEED_RECORDS = 100  # saved through Store, then copied in SQL
DCT_IMAGES = 10_000
DCT_LOOP_IMAGES = 1000
STUDY_SPEC = Path(__file__).resolve().parents[1] / "specs" / "mnist_width_dct.toml"
STUDY_STEPS = 3
STUDY_REPEATS = 1


class GroupedSeeds:
    """MEMBERS CompressedNets trained one after another ÷ fused (best layout)."""

    params = ([0.5, 1.0], ["fp32", "bf16"])
    param_names = ["alpha", "precision"]
    unit = "ratio"
    timeout = 600.0

    def setup(self, alpha, precision):
        self.data = synthetic_data(STEPS * 128, 0)

    def track_fused_speedup(self, alpha, precision):
        from benchmarks.grouped_seeds import speed

        t = speed(alpha, precision, self.data, list(range(MEMBERS)), steps=STEPS,
                  repeats=REPEATS, batch_size=128)  # fmt: skip
        return t["sequential"] / min(t["fused"], t["fused_cl"])

    track_fused_speedup.unit = "ratio"


class Precision:
    """Training steps of 3 fused CompressedNets (α = 0.5): fp32 time ÷ bf16 time."""

    unit = "ratio"
    timeout = 600.0

    def setup(self):
        self.data = synthetic_data(STEPS * 128, 0)

    def track_bf16_speedup(self):
        from benchmarks.grouped_seeds import speed

        seconds = {
            p: speed(0.5, p, self.data, [0, 1, 2], steps=STEPS, repeats=REPEATS,
                     batch_size=128, variants=("fused_cl",))["fused_cl"]
            for p in ("fp32", "bf16")
        }  # fmt: skip
        return seconds["fp32"] / seconds["bf16"]

    track_bf16_speedup.unit = "ratio"


class ReportFront:
    """``bench report --pareto`` over REPORT_RUNS stored runs: a plain ``GROUP BY``
    query's time ÷ the report's (< 1: the report costs more than reading the means)."""

    params = [2, 3]
    param_names = ["objectives"]
    timeout = 600.0

    def setup_cache(self):
        from benchmarks.report_front import build

        path = Path("report-runs.duckdb").resolve()  # asv: a scratch directory it keeps
        path.unlink(missing_ok=True)
        build(path, REPORT_RUNS, REPORT_SEED_RECORDS)
        return str(path)

    setup_cache.timeout = 600.0

    def track_report_speedup(self, path, objectives):
        from benchmarks.report_front import OBJECTIVES, plain_seconds, seconds_for

        chosen = OBJECTIVES[0] if objectives == 2 else OBJECTIVES[1]
        seconds_for(Path(path), chosen)  # warm: the OS file cache
        harness = min(seconds_for(Path(path), chosen)[0] for _ in range(REPEATS))
        plain = min(plain_seconds(Path(path)) for _ in range(REPEATS))
        return plain / harness

    track_report_speedup.unit = "ratio"


class DCTSpeed:
    """The ``dct`` transform on DCT_IMAGES images ÷ a float64 SciPy loop image by image
    (its time on DCT_LOOP_IMAGES images, scaled)."""

    params = [["magnitude", "lowfreq"], [0.1, 0.5]]
    param_names = ["selection", "ratio"]
    timeout = 300.0

    def setup(self, selection, ratio):
        from benchharness.plugins import get_registry

        self.data = synthetic_data(DCT_IMAGES, 0)
        self.transform = get_registry().create(
            "transform", "dct", {"ratio": ratio, "selection": selection}
        )
        self.transform.apply(self.data)  # one-off costs out of the way

    def track_dct_speedup(self, selection, ratio):
        from benchmarks.speed_sections import per_image_dct

        harness = min(_seconds(lambda: self.transform.apply(self.data)) for _ in range(REPEATS))
        sample = self.data.train_x[:DCT_LOOP_IMAGES].double().numpy()
        k = self.transform.kept(28, 28)
        loop = _seconds(lambda: per_image_dct(sample, k, selection))
        return loop * DCT_IMAGES / sample.shape[0] / harness

    track_dct_speedup.unit = "ratio"


class StudyProjection:
    """Projected hours of STUDY_SPEC's full study from measured step times
    (speed_sections.project_study): jobs one after another (fp32) and seeds grouped."""

    params = [["sequential", "grouped_fp32", "grouped_bf16"]]
    param_names = ["mode"]
    timeout = 900.0

    def setup_cache(self):
        from benchmarks.speed_sections import project_study
        from benchmarks.speed_table import data_dir

        folder = data_dir()
        if "mnist" in STUDY_SPEC.read_text() and not (folder / "MNIST" / "raw").is_dir():
            return None  # no data: setup skips every benchmark of the class
        hours = project_study(STUDY_SPEC, folder, steps=STUDY_STEPS, repeats=STUDY_REPEATS)
        return {k: v / 3600 for k, v in hours.items() if k in self.params[0]}

    setup_cache.timeout = 900.0

    def setup(self, hours, mode):
        if hours is None:
            raise NotImplementedError(f"no MNIST in {os.environ.get('BENCH_DATA_DIR')}")

    def track_projected_hours(self, hours, mode):
        return hours[mode]

    track_projected_hours.unit = "hours"


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
