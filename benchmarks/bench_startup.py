"""Start-up of the `bench` commands that run no job (issue 9: ≤ 0.3 s, no torch).

* ``timeraw_import_*``: importing the CLI, and torch for scale, each in a fresh
  interpreter (asv times the code, not the interpreter's own start);
* ``StartupRatios``: wall time of whole `bench` processes from
  :func:`benchmarks.startup.measure_startup` (median of ``REPEATS``), tracked as the
  ratio to ``python -c "import torch"`` measured in the same run, and whether each
  command imported torch (1) or not (0).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.startup import measure_startup  # noqa: E402

REPEATS = 5
COMMANDS = [
    "bench --help",
    "bench plugins",
    "bench report --pareto",
    "bench validate specs/mnist_width_dct.toml",
]


def timeraw_import_cli():
    return "from benchharness.cli import app"


def timeraw_import_torch():
    return "import torch"


class StartupRatios:
    timeout = 600
    unit = "ratio"
    param_names = ["command"]
    params = [COMMANDS]

    def setup_cache(self):
        rows = measure_startup(REPEATS, only=COMMANDS)
        return {row["command"]: row for row in rows}

    def track_vs_import_torch(self, rows, command):
        return rows[command]["vs_import_torch"] if command in rows else float("nan")

    def track_imports_torch(self, rows, command):
        return int(bool(rows[command]["imports_torch"])) if command in rows else float("nan")
