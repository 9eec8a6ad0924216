"""Reading, expanding and validating a spec of ``len(WIDTHS)·len(RATIOS)·len(LRS)·
len(SEEDS)`` (= 1,000) jobs over the built-in plugins: ``matrix.load_jobs``, the call behind
``bench run`` and ``bench run --dry-run``."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from benchharness.matrix import load_jobs
from benchharness.plugins import get_registry

WIDTHS = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 3.0, 4.0]
RATIOS = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
LRS = [0.001, 0.003, 0.01, 0.03, 0.1]
SEEDS = [0, 1]

SPEC = """\
name = "asv_matrix"
description = "benchmark of matrix expansion"

[dataset]
name = "mnist"

[data]
train_subset = 20000

[transform]
name = "dct"
ratio = 0.3

[model]
name = "compressednet"

[optimizer]
name = "sgd"
epochs = 2
schedule = "cosine"

[compressor]
name = "prune"
keep = 0.1

[matrix]
"model.width" = {widths}
"transform.ratio" = {ratios}
"optimizer.lr" = {lrs}
seeds = {seeds}
exclude = [{{ "model.width" = 4.0, "transform.ratio" = 1.0, "optimizer.lr" = 0.1 }}]
include = [{{ "transform" = {{ name = "none" }}, "optimizer.lr" = 0.01 }}]

[quick]
"optimizer.epochs" = 1
"""


def expected_jobs() -> int:
    full = len(WIDTHS) * len(RATIOS) * len(LRS)
    excluded = int(4.0 in WIDTHS and 1.0 in RATIOS and 0.1 in LRS)
    return (full - excluded + 1) * len(SEEDS)


class MatrixExpansion:
    timeout = 120.0

    def setup(self):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-matrix-"))
        self.path = self.dir / "matrix.toml"
        self.path.write_text(
            SPEC.format(widths=WIDTHS, ratios=RATIOS, lrs=LRS, seeds=SEEDS), encoding="utf-8"
        )
        self.registry = get_registry()

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_load_jobs(self):
        """Seconds to read, expand and validate the spec (about 1,000 jobs)."""
        load_jobs(self.path, self.registry)

    def track_jobs(self):
        """How many jobs the spec expands to (a sanity check of what is timed)."""
        _spec, jobs = load_jobs(self.path, self.registry)
        if len(jobs) != expected_jobs():
            raise AssertionError(f"expected {expected_jobs()} jobs, got {len(jobs)}")
        return len(jobs)

    track_jobs.unit = "jobs"
