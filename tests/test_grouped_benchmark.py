"""benchmarks/grouped_seeds.py runs end to end at a tiny size (no timing assertions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_grouped_seeds_benchmark_prints_a_ratio_per_configuration(data_dir):
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "grouped_seeds.py"),
            "--alphas",
            "0.25",
            "--precisions",
            "fp32,bf16",
            "--members",
            "2",
            "--steps",
            "1",
            "--repeats",
            "1",
            "--train",
            "64",
            "--test",
            "32",
            "--threads",
            "1",
            "--data-dir",
            str(data_dir),
            "--no-probe",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    ratios = [line for line in out.splitlines() if line.startswith("RATIO grouped_seeds")]
    assert [r.split("]")[0] for r in ratios] == [
        "RATIO grouped_seeds[alpha=0.25,precision=fp32",
        "RATIO grouped_seeds[alpha=0.25,precision=bf16",
    ]
    assert all(float(r.rsplit("=", 1)[1]) > 0 for r in ratios)
    assert "64 MNIST images" in out
