"""A real quick run of specs/mnist_width_dct.toml, built once per test session for the
report tests (and the plots/HTML tests): ``quick_study_db(tmp_path_factory, data_dir)``.

Seed 0 of all 10 configurations, then seed 1 of the α = 0.5 row and the reference (14
jobs), each shrunk further than ``--quick`` (1 epoch on 2,000 images, 1,000 test images,
no latency or activation statistics) so that the build takes about a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchharness.cli import app

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "mnist_width_dct.toml"
SHRINK = [
    "--quick",
    *("--set", "data.train_subset=2000"),
    *("--set", "data.test_subset=1000"),
    *("--set", "optimizer.epochs=1"),
    *("--set", "measure.latency=false"),
    *("--set", "measure.activation_stats=false"),
]
SECOND_SEED = [*("--set", "matrix.seeds=[1]"), *("--set", 'matrix."model.width"=[0.5]')]

_built: dict[str, Path] = {}


def quick_study_db(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The database (built on first use in this session; later calls return it)."""
    if "db" in _built:
        return _built["db"]
    db = tmp_path_factory.mktemp("quick_study") / "bench.duckdb"
    old = os.environ.get("BENCH_DATA_DIR")
    os.environ["BENCH_DATA_DIR"] = str(data_dir)
    try:
        for extra in ([], SECOND_SEED):
            args = ["run", str(SPEC), *SHRINK, *extra, "--db", str(db)]
            result = CliRunner().invoke(app, args)
            if result.exit_code != 0:
                raise AssertionError(f"bench {' '.join(args)} failed:\n{result.output}")
    finally:
        if old is None:
            os.environ.pop("BENCH_DATA_DIR", None)
        else:
            os.environ["BENCH_DATA_DIR"] = old
    _built["db"] = db
    return db
