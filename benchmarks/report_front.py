"""Time ``bench report --pareto`` (``summary_table(pareto=True)`` with the metrics a
table shows: the rows the command renders, no DataFrame) over databases of 10,000 and
100,000 stored runs (5 seeds per configuration), for two and three objectives, and print
the seconds and peak RSS, beside a plain baseline: the per-configuration means read by
one hand-written DuckDB ``GROUP BY`` query (no front).

    .venv/bin/python benchmarks/report_front.py [--runs 10000 100000] [--dir /tmp/x]

The database is built from ``bench_store.sample_record`` runs saved through ``Store``,
then multiplied in SQL (new job and config ids, jittered accuracy), so building 100k
runs takes seconds, not hours.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchharness import report  # noqa: E402
from benchharness.report.aggregate import summary_table  # noqa: E402
from benchharness.store import Store  # noqa: E402
from benchmarks.bench_store import SPEC_NAME, sample_record  # noqa: E402

SEEDS = 5
SEED_RECORDS = 100  # records saved through Store, then copied in SQL


def build(path: Path, runs: int, seed_records: int = SEED_RECORDS) -> Store:
    """A database of ``runs`` completed runs, ``runs // SEEDS`` configurations:
    ``seed_records`` records saved through ``Store``, copied in SQL."""
    store = Store(path)
    for i in range(seed_records):
        store.save(sample_record(2 * i))  # even indices: completed, seed 0
    copies = runs // seed_records
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute(
            f"""CREATE TEMP TABLE base AS SELECT * FROM runs;
                DELETE FROM runs;
                INSERT INTO runs BY NAME
                SELECT base.* REPLACE (
                    job_id || '-' || k AS job_id,
                    config_id || '-' || (k // {SEEDS}) AS config_id,
                    k % {SEEDS} AS seed,
                    test_accuracy + 0.01 * sin(k * 12.9898 + hash(job_id) % 1000)
                        AS test_accuracy,
                    CAST(flops_effective * (1 + (k // {SEEDS}) % 97 / 100.0) AS BIGINT)
                        AS flops_effective,
                    CAST(size_bits * (1 + (k // {SEEDS}) % 89 / 100.0) AS BIGINT) AS size_bits
                )
                FROM base, range({copies}) t(k)"""
        )
    return store


OBJECTIVES = (
    "accuracy:max,flops_effective:min",
    "accuracy:max,flops_effective:min,size:min",
)


def seconds_for(path: Path, objectives: str) -> tuple[float, int]:
    """Seconds of one report on a fresh ``Store``, as ``bench report`` does (its first
    read checks the schema and the journal)."""
    start = time.perf_counter()
    table = summary_table(
        Store(path),
        spec=SPEC_NAME,
        objectives=objectives,
        pareto=True,
        metrics=list(report.TABLE_METRICS),
    )
    return time.perf_counter() - start, len(table)


def plain_seconds(path: Path) -> float:
    """Seconds of the plain baseline: the per-configuration means a hand-written DuckDB
    query would read (accuracy, effective FLOPs, size, compression ratio), no front."""
    import duckdb

    start = time.perf_counter()
    with duckdb.connect(str(path), read_only=True) as con:
        con.execute(
            """SELECT config_id, count(*) AS n, avg(test_accuracy), stddev_samp(test_accuracy),
                      avg(flops_effective), avg(size_bits), avg(compression_ratio)
               FROM runs WHERE spec_name = ? AND status = 'completed'
               GROUP BY config_id""",
            [SPEC_NAME],
        ).df()
    return time.perf_counter() - start


def measure_report(
    runs: list[int], folder: Path, repeats: int = 3, objectives: tuple[str, ...] = OBJECTIVES
) -> list[dict[str, object]]:
    """Per database size and objectives: the best of ``repeats`` timings (after one
    untimed warm read) of the harness's report and of :func:`plain_seconds`, interleaved,
    with the front's size. Builds ``folder/runs-<n>.duckdb`` (replacing it)."""
    results = []
    for n in runs:
        path = folder / f"runs-{n}.duckdb"
        path.unlink(missing_ok=True)
        build(path, n)
        for objective in objectives:
            seconds_for(path, objective)  # warm: the OS file cache
            plain_seconds(path)
            harness, plain, front = [], [], 0
            for _ in range(repeats):
                seconds, front = seconds_for(path, objective)
                harness.append(seconds)
                plain.append(plain_seconds(path))
            results.append(
                {
                    "runs": n,
                    "configs": n // SEEDS,
                    "objectives": objective,
                    "seconds": min(harness),
                    "plain_seconds": min(plain),
                    "front": front,
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="report-front-"))
    print(
        f"{'runs':>8} {'configs':>8} {'objectives':>42} {'seconds':>8} {'plain s':>8} {'front':>6}"
    )
    for row in measure_report(args.runs, folder, args.repeats):
        print(
            f"{row['runs']:>8} {row['configs']:>8} {row['objectives']:>42} "
            f"{row['seconds']:>8.3f} {row['plain_seconds']:>8.3f} {row['front']:>6}"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
