"""Start-up time of the `bench` commands that run no job, against plain Python and
``import torch`` measured in the same run, and whether each imported torch or pandas.

    .venv/bin/python benchmarks/startup.py [--repeats 5] [--only "bench plugins" ...]

Each command runs ``repeats`` times as a fresh process (the installed ``bench`` script;
``python -m benchharness`` when there is none) after one untimed warm-up run, and the
median wall time is printed with its ratio to ``python -c pass`` and to ``python -c
"import torch"``; ``--only`` (repeatable) times just the `bench` commands so labelled,
besides the two baselines. ``bench report`` reads a small database of 40 runs (and two
claims) built once in a temporary directory. Python writes and reuses bytecode caches
(``__pycache__``) as it does for any user: ``PYTHONDONTWRITEBYTECODE`` is cleared for
the timed processes, since compiling every module from source on each start would be
timed otherwise (it costs ~0.1 s here). Whether a command imported torch (or pandas,
which the text reports should not) is checked in one more run of the same command
in-process (:data:`PROBE`), which then looks at ``sys.modules``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# runs `bench ARGS...` in-process, then prints the heavy modules it imported
PROBE = """
import sys
from benchharness.cli import app
try:
    app(sys.argv[1:], prog_name="bench", standalone_mode=False)
except SystemExit:
    pass
print(*(m for m in ("torch", "torchvision", "numpy", "pandas") if m in sys.modules))
"""
SPEC = ROOT / "specs" / "mnist_width_dct.toml"
RUNS_IN_DB = 40
BASELINES = ("python -c pass", 'python -c "import torch"')
IMPORT_KEYS = ("imports_torch", "imports_pandas")


def _bench_command() -> list[str]:
    script = Path(sys.executable).with_name("bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "benchharness"]


def commands(db: Path) -> dict[str, list[str]]:
    """The timed commands by label: two baselines, then the `bench` commands."""
    bench = _bench_command()
    python, torch = BASELINES
    return {
        python: [sys.executable, "-c", "pass"],
        torch: [sys.executable, "-c", "import torch"],
        "bench --help": [*bench, "--help"],
        "bench plugins": [*bench, "plugins"],
        "bench plugins --format json": [*bench, "plugins", "--format", "json"],
        "bench report": [*bench, "report", "--db", str(db)],
        "bench report --pareto": [*bench, "report", "--pareto", "--db", str(db)],
        "bench report --format json": [*bench, "report", "--format", "json", "--db", str(db)],
        f"bench validate specs/{SPEC.name}": [*bench, "validate", str(SPEC)],
    }


def build_db(folder: Path) -> Path:
    """A database of ``RUNS_IN_DB`` completed runs (20 configurations × 2 seeds) and two
    claims, so that ``bench report`` prints its claims table too."""
    from benchharness.store import Store
    from benchmarks.bench_store import sample_record

    path = folder / "startup.duckdb"
    store = Store(path)
    records = []
    for i in range(RUNS_IN_DB):
        index = i if i % 50 != 49 else i + 1  # sample_record fails every 50th
        records.append(sample_record(index))
        store.save(records[-1])
    first = records[0]
    store.save_claims(
        first.spec_name,
        [
            {"match": first.axes, "metric": "accuracy", "value": 0.9, "se": 0.01, "source": "x"},
            {
                "match": {"model.width": first.config["model"]["width"]},
                "metric": "accuracy",
                "value": 0.5,
                "se": None,
                "source": "y",
            },
        ],
    )
    return path


def _wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return seconds


def imported(argv: list[str], env: dict[str, str]) -> set[str] | None:
    """Which of torch, torchvision, numpy and pandas the `bench` command ``argv`` imports
    (None for the baselines)."""
    bench = _bench_command()
    if argv[: len(bench)] != bench:
        return None
    probe = [sys.executable, "-c", PROBE, *argv[len(bench) :]]
    done = subprocess.run(probe, env=env, capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def imports_torch(argv: list[str], env: dict[str, str]) -> bool | None:
    """Whether the `bench` command ``argv`` imports torch (None for the baselines)."""
    modules = imported(argv, env)
    return None if modules is None else "torch" in modules


def measure_startup(repeats: int = 5, only: Iterable[str] | None = None) -> list[dict]:
    """One row per command: ``command``, ``median_s`` (wall seconds of a fresh process,
    median of ``repeats`` after a warm-up), ``vs_python`` and ``vs_import_torch`` (its
    median over the baseline's median in this run), ``imports_torch`` and
    ``imports_pandas`` (None for the baselines). ``only``: just these `bench` commands
    (labels of :func:`commands`); the baselines always run."""
    env = {**os.environ, "BENCH_DATA_DIR": os.environ.get("BENCH_DATA_DIR", "")}
    env.pop("BENCH_DB", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        to_run = commands(build_db(Path(folder)))
        if only is not None:
            keep = {*BASELINES, *only}
            to_run = {label: argv for label, argv in to_run.items() if label in keep}
        times: dict[str, list[float]] = {label: [] for label in to_run}
        for argv in to_run.values():
            _wall(argv, env)  # warm-up: file-system caches, .pyc files
        for _ in range(repeats):  # interleaved, so load changes hit every command alike
            for label, argv in to_run.items():
                times[label].append(_wall(argv, env))
        medians = {label: statistics.median(values) for label, values in times.items()}
        python, torch = (medians[label] for label in BASELINES)
        rows = []
        for label, argv in to_run.items():
            modules = imported(argv, env)
            rows.append(
                {
                    "command": label,
                    "median_s": medians[label],
                    "vs_python": medians[label] / python,
                    "vs_import_torch": medians[label] / torch,
                    "imports_torch": None if modules is None else "torch" in modules,
                    "imports_pandas": None if modules is None else "pandas" in modules,
                }
            )
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--only", action="append", metavar="COMMAND", help='a label, e.g. "bench plugins"'
    )
    args = parser.parse_args()
    unknown = set(args.only or ()) - set(commands(Path("startup.duckdb")))
    if unknown:
        parser.error(f"--only: unknown command {', '.join(sorted(unknown))}")
    load = os.getloadavg()[0]
    rows = measure_startup(args.repeats, only=args.only)
    print(f"start-up, median of {args.repeats} fresh processes (1-min load {load:.2f})")
    print(
        f"{'command':<40} {'median s':>9} {'× python':>9} {'× torch':>8}"
        "  imports torch  imports pandas"
    )
    for row in rows:
        torch, pandas = ({None: "", True: "yes", False: "no"}[row[k]] for k in IMPORT_KEYS)
        print(
            f"{row['command']:<40} {row['median_s']:>9.3f} {row['vs_python']:>9.1f}"
            f" {row['vs_import_torch']:>8.2f}  {torch:<13}  {pandas}"
        )


if __name__ == "__main__":
    main()
