"""Results databases for the plot and HTML report tests, each built once per session.

``lc_study``: tests/specs/report_lc_digits.toml, LC and iDC (K = 2 quantisation) on the
8×8 digits, 2 seeds each (4 jobs, ~20 s): n > 1, per-epoch and per-LC-step curves (μ,
‖w − Δ(Θ)‖) and a claim.
"""

from __future__ import annotations

import functools
from pathlib import Path

from typer.testing import CliRunner

from benchharness.cli import app

LC_SPEC = Path(__file__).parent / "specs" / "report_lc_digits.toml"


@functools.cache
def lc_study(base: Path) -> Path:
    """The LC digits study's database under ``base`` (run on the first call only)."""
    db = base / "report_lc_digits" / "bench.duckdb"
    result = CliRunner().invoke(app, ["run", str(LC_SPEC), "--db", str(db)])
    assert result.exit_code == 0, result.output
    return db
