"""The shipped width × DCT study on real MNIST, shrunk to seconds: `bench run` then
`bench report --pareto`, with the paper's claims beside the measured numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.store import Store

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "mnist_width_dct.toml"

# One compressed configuration (α = 0.5, β = 0.3) plus the spec's uncompressed reference
# (α = 1, no transform), one seed (--quick). The spec's recipe (lr 0.01) barely leaves
# chance level on 2,000 images in one epoch, so: 4,000 images, 2 epochs, lr 0.05.
SHRINK = [
    "--quick",
    "--set",
    "data.train_subset=4000",
    "--set",
    "data.test_subset=1000",
    "--set",
    "optimizer.epochs=2",
    "--set",
    "optimizer.lr=0.05",
    "--set",
    'matrix."model.width"=[0.5]',
    "--set",
    'matrix."transform.ratio"=[0.3]',
    "--set",
    "measure.latency_repeats=5",
]


def test_mnist_width_dct_study(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_DATA_DIR", str(data_dir))
    monkeypatch.delenv("BENCH_DB", raising=False)
    db = tmp_path / "bench.duckdb"
    runner = CliRunner()

    dry = runner.invoke(app, ["run", str(SPEC), *SHRINK, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert len(dry.stdout.splitlines()) == 2

    result = runner.invoke(app, ["run", str(SPEC), *SHRINK, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "mnist_width_dct: 2 jobs, 0 already completed, 2 to run" in result.stderr
    assert "2 completed, 0 failed" in result.stderr
    assert "[job 1/2] train 2/2 " in result.stderr

    runs = Store(db).runs()
    assert len(runs) == 2 and set(runs["status"]) == {"completed"}
    assert runs["quick"].all()
    assert (runs["device"] == "cpu").all()

    full = runner.invoke(app, ["report", "--db", str(db), "--format", "json"])
    assert full.exit_code == 0, full.output
    all_rows = json.loads(full.stdout)
    assert len(all_rows) == 2

    report = runner.invoke(app, ["report", "--db", str(db), "--pareto", "--format", "json"])
    assert report.exit_code == 0, report.output
    rows = json.loads(report.stdout)
    assert {r["config_id"] for r in rows} <= {r["config_id"] for r in all_rows}
    (dct,) = [r for r in rows if r["model.width"] == 0.5 and r["transform.ratio"] == 0.3]

    # the paper's number beside the measured one
    assert dct["claimed_test_accuracy"] == 0.946
    assert dct["claimed_test_accuracy_se"] == 0.0015
    assert dct["n"] == 1 and dct["test_accuracy_se"] is None
    assert dct["test_accuracy_mean"] > 0.5  # chance is 0.1
    assert dct["on_front"] is True  # the fewest FLOPs of the study

    # the DCT keeps floor(0.3 · 784) = 235 values per image
    assert dct["input_values_mean"] == 235
    # 235 kept 32-bit coefficients + their positions as a 784-bit mask (cheaper than 235
    # 10-bit indices), against 784 32-bit pixels
    assert dct["input_ratio_mean"] == pytest.approx(784 * 32 / (235 * 32 + 784))
    # CompressedNet α = 0.5: convs 1→8 and 8→16 (3×3), fc 16·7·7→128→10
    params = (1 * 8 * 9 + 8) + (8 * 16 * 9 + 16) + (16 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert dct["params_mean"] == params
    assert dct["size_bits_mean"] == 32 * params
    assert dct["flops_mean"] > 0

    # the uncompressed reference: no transform, no claim
    (reference,) = [r for r in all_rows if r["model.width"] == 1.0]
    assert reference["transform"] == {"name": "none"}  # nested JSON, not JSON text
    assert reference["claimed_test_accuracy"] is None
    assert reference["input_values_mean"] == 784
    assert reference["flops_mean"] > dct["flops_mean"]
    assert reference["test_accuracy_mean"] > 0.5

    table = runner.invoke(app, ["report", "--db", str(db), "--pareto"])
    assert table.exit_code == 0, table.output
    assert "claimed accuracy" in table.stdout and "94.60 ± 0.15" in table.stdout
