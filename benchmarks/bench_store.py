"""The results database (DuckDB) and the report over it.

* ``StoreSave.time_save_records``: ``N_SAVE`` ``Store.save`` calls, each its own
  connection and committed transaction (as the executor saves each finished job);
* ``StoredRuns``: a database of ``N_STORED`` runs (``N_CONFIGS`` configurations × 2 seeds,
  every 50th run failed), built once by ``setup_cache``; ``completed_ids`` for
  ``N_QUERY`` ids (half of them stored) — what ``bench run`` asks to skip finished jobs —
  and ``report.summarize`` (mean ± se per configuration and the Pareto flag).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchharness import report
from benchharness.records import CurvePoint, RunRecord
from benchharness.store import Store

N_SAVE = 50
N_STORED = 500
N_QUERY = 1000
EPOCHS = 10  # curve points per run: EPOCHS × 5 values

SPEC_NAME = "asv_store"
_WIDTHS = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0]
_RATIOS = [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]


def sample_record(index: int, *, job_id: str | None = None) -> RunRecord:
    """A realistic completed (every 50th: failed) RunRecord of configuration
    ``index // 2`` and seed ``index % 2``: two axes, all metric columns, provenance and
    an ``EPOCHS``-epoch curve."""
    config_index, seed = divmod(index, 2)
    width = _WIDTHS[config_index % len(_WIDTHS)]
    ratio = _RATIOS[(config_index // len(_WIDTHS)) % len(_RATIOS)]
    lr = 0.01 * (1 + config_index // (len(_WIDTHS) * len(_RATIOS)))
    failed = index % 50 == 49
    accuracy = 0.9 + 0.05 * ratio + 0.01 * width - 0.001 * seed
    started = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=index)
    config = {
        "dataset": {"name": "mnist", "normalize": "none"},
        "data": {"train_subset": None, "test_subset": None, "subset_seed": 0},
        "transform": {
            "name": "dct",
            "ratio": ratio,
            "selection": "magnitude",
            "output": "reconstruction",
        },
        "model": {"name": "compressednet", "width": width, "hidden": 128},
        "optimizer": {
            "name": "sgd",
            "lr": lr,
            "momentum": 0.9,
            "epochs": EPOCHS,
            "batch_size": 128,
            "schedule": "cosine",
        },
        "compressor": [],
        "seed": seed,
    }
    record = RunRecord(
        job_id=job_id or f"job{index:06d}",
        config_id=f"cfg{config_index:06d}",
        spec_name=SPEC_NAME,
        spec_hash="0123456789abcdef",
        quick=False,
        seed=seed,
        config=config,
        axes={"model.width": width, "transform.ratio": ratio, "optimizer.lr": lr},
        status="failed" if failed else "completed",
        error="diverged: training loss is not finite" if failed else None,
        started_at=started,
        finished_at=started + timedelta(seconds=42),
        provenance={
            "git_commit": "0" * 40,
            "package_version": "0.1.0",
            "plugin_versions": {"model:compressednet": "1", "transform:dct": "1"},
            "torch_version": "2.x",
            "cuda_version": None,
            "device": "cpu",
            "cpu": "benchmark cpu",
            "hostname": "bench",
        },
    )
    if not failed:
        record.metrics.update(
            test_accuracy=accuracy,
            test_loss=1.0 - accuracy,
            params=int(50_000 * width),
            flops=int(2_000_000 * width * width),
            flops_effective=int(2_000_000 * width * width),
            size_bits=int(1_600_000 * width),
            compression_ratio=1.0,
            compression_realised=None,
            input_values=int(784 * ratio),
            input_ratio=1 / ratio,
            latency_b1_median_ms=0.2 * width,
            latency_b1_p90_ms=0.25 * width,
            latency_batch_median_ms=3.0 * width,
            latency_batch_p90_ms=3.5 * width,
            latency_batch_size=128,
            train_seconds=40.0 + width,
        )
        record.extra.update({"act.fc1.mean": 0.1, "act.fc1.std": 1.0})
    for epoch in range(1, EPOCHS + 1):
        for name, value in (
            ("train_loss", 1 / epoch),
            ("test_loss", 1.1 / epoch),
            ("test_accuracy", accuracy * epoch / EPOCHS),
            ("lr", lr),
        ):
            record.curves.append(CurvePoint("train", epoch, name, value))
        record.curves.append(CurvePoint("train", epoch, "epoch_seconds", 4.0))
    return record


class StoreSave:
    """Seconds to save ``N_SAVE`` records one by one into an existing database."""

    timeout = 120.0

    def setup(self):
        self.dir = Path(tempfile.mkdtemp(prefix="bench-store-"))
        self.store = Store(self.dir / "runs.duckdb")
        self.store.save(sample_record(0, job_id="schema"))  # creates the schema
        self.records = [sample_record(i) for i in range(N_SAVE)]
        self.calls = 0

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_save_records(self):
        # New job ids on every call, so each save is an insert whatever asv's repeat count.
        self.calls += 1
        for i, record in enumerate(self.records):
            record.job_id = f"call{self.calls}-{i}"
            self.store.save(record)


class StoredRuns:
    """Reads over a database of ``N_STORED`` runs."""

    timeout = 120.0

    def setup_cache(self):
        # asv runs setup_cache once, in a scratch directory it keeps for the benchmarks.
        path = Path("stored-runs.duckdb").resolve()
        if path.exists():
            path.unlink()
        store = Store(path)
        for i in range(N_STORED):
            store.save(sample_record(i))
        return str(path)

    setup_cache.timeout = 600.0

    def setup(self, path):
        self.store = Store(path)
        stored = [f"job{i:06d}" for i in range(N_STORED)]
        missing = [f"missing{i:06d}" for i in range(max(N_QUERY - N_STORED, 0))]
        self.ids = (stored + missing)[:N_QUERY]
        self.store.completed_ids(self.ids[:1])  # the one-off schema check on first read

    def time_completed_ids(self, path):
        """Seconds for ``Store.completed_ids`` of ``N_QUERY`` ids."""
        self.store.completed_ids(self.ids)

    def time_summarize(self, path):
        """Seconds for ``report.summarize``: per-configuration mean ± se and Pareto flag."""
        report.summarize(self.store, spec=SPEC_NAME)

    def time_summarize_pareto(self, path):
        """Seconds for ``report.summarize(pareto=True)`` (``bench report --pareto``)."""
        report.summarize(
            self.store, spec=SPEC_NAME, objectives="accuracy:max,flops:min", pareto=True
        )
