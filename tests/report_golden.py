"""Representative results databases and every text `bench report` command over them, for
the test that the report prints exactly what it printed before it stopped using pandas
(tests/test_report_golden.py, outputs in tests/golden/report_outputs.json).

    .venv/bin/python -m tests.report_golden --write   # re-capture (only on purpose)

``mixed``: two specs, integer/float/string/table-valued axes (one only in some runs),
3 seeds, quick and full runs, failed runs (one configuration has only failed ones), NULL
metrics, sizes in MiB/KiB, latencies, times, a numeric ``extra`` metric, compression
realised or simulated, and claims (an alias, one matching nothing, one with a quick
match). ``plain``: one spec, accuracy and FLOPs only (two objectives by default), no
claims, one seed per configuration.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from benchharness.cli import app
from benchharness.records import RunRecord
from benchharness.store import Store

GOLDEN = Path(__file__).parent / "golden" / "report_outputs.json"
T0 = datetime(2026, 1, 2, 3, 4, 5)


def _record(spec: str, config_id: str, seed: int, axes: dict, metrics: dict, **kw) -> RunRecord:
    config: dict = {"train": {"epochs": 2}}
    for path, value in axes.items():
        node = config
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    status = kw.pop("status", "completed")
    index = kw.pop("index", 0)
    return RunRecord(
        job_id=f"{config_id}-s{seed}{'-q' if kw.get('quick') else ''}",
        config_id=config_id,
        spec_name=spec,
        spec_hash="h",
        quick=kw.pop("quick", False),
        seed=seed,
        config=config,
        axes=axes,
        status=status,
        error=kw.pop(
            "error", "RuntimeError: boom [quick]\ntraceback line" if status == "failed" else None
        ),
        metrics=metrics,
        extra=kw.pop("extra", {}),
        started_at=T0 + timedelta(minutes=index),
        finished_at=T0 + timedelta(minutes=index, seconds=30, microseconds=index * 1000),
    )


def build_mixed(path: Path) -> Path:
    store = Store(path)
    index = 0
    for width in (1, 2, 4):
        for ratio in (0.1, 0.5):
            config_id = f"a-w{width}-r{ratio}"
            optimizer = {"name": "sgd", "lr": 0.1 * width}
            axes = {"model.width": width, "transform.ratio": ratio, "optim": optimizer}
            if width == 4:
                axes["transform.kind"] = "lowfreq" if ratio < 0.3 else "magnitude"
            for seed in range(3 if width != 2 else 1):
                index += 1
                compressed = ratio < 0.3
                metrics = {
                    "test_accuracy": 0.80 + 0.03 * width + 0.05 * ratio + 0.0037 * seed,
                    "test_loss": 0.5 / width + 0.01 * seed,
                    "params": 120_000 * width,
                    "flops": 2_500_000 * width,
                    "flops_effective": int(2_500_000 * width * (ratio if compressed else 1)),
                    "size_bits": int(32 * 120_000 * width * (ratio if compressed else 1)),
                    "compression_ratio": 1 / ratio if compressed else 1.0,
                    "compression_realised": width != 1,
                    "train_seconds": 12.5 * width + seed,
                    "latency_b1_median_ms": 0.21 * width + 0.001 * seed,
                }
                if (width, seed) == (1, 2):
                    metrics.pop("size_bits")  # NULL metric in one run
                if width == 2 and ratio == 0.5:
                    metrics.pop("latency_b1_median_ms")  # NULL in a whole configuration
                store.save(
                    _record(
                        "spec-a",
                        config_id,
                        seed,
                        axes,
                        metrics,
                        index=index,
                        extra={"prune.sparsity": ratio / 2 + 0.01 * seed, "note": "x"},
                    )
                )
            if (width, ratio) == (1, 0.5):  # a failure beside completed runs
                index += 1
                store.save(_record("spec-a", config_id, 9, axes, {}, status="failed", index=index))
    # a configuration with only failed runs, and quick runs
    index += 1
    axes = {"model.width": 8, "transform.ratio": 0.1, "optim": {"name": "adam", "lr": 0.001}}
    store.save(_record("spec-a", "a-w8", 0, axes, {}, status="failed", index=index))
    for seed in range(2):
        index += 1
        axes = {"model.width": 1, "transform.ratio": 0.1, "optim": {"name": "sgd", "lr": 0.1}}
        metrics = {
            "test_accuracy": 0.7 + 0.01 * seed,
            "flops_effective": 250_000,
            "size_bits": 3000,
        }
        store.save(_record("spec-a", "a-w1-r0.1", seed, axes, metrics, quick=True, index=index))
    # a second spec: other axes, small sizes (bits), no latency
    for depth in (2, 3):
        for act in ("relu", "gelu"):
            for seed in range(2):
                index += 1
                metrics = {
                    "test_accuracy": 0.9
                    + 0.01 * depth
                    - (0.004 if act == "gelu" else 0)
                    + 0.002 * seed,
                    "flops_effective": 1000 * depth,
                    "flops": 1000 * depth,
                    "size_bits": 700 * depth + (50 if act == "gelu" else 0),
                    "params": 20 * depth,
                }
                axes = {"model.depth": depth, "model.act": act}
                store.save(_record("spec-b", f"b-d{depth}-{act}", seed, axes, metrics, index=index))
    store.save_claims(
        "spec-a",
        [
            {
                "match": {"model.width": 2, "transform.ratio": 0.1},
                "metric": "accuracy",
                "value": 0.9,
                "se": 0.002,
                "source": "paper",
            },
            {
                "match": {"model.width": 1},
                "metric": "test_accuracy",
                "value": 0.84,
                "se": None,
                "source": "paper",
            },
            {
                "match": {"model.width": 16},
                "metric": "accuracy",
                "value": 0.99,
                "se": 0.01,
                "source": "paper",
            },
            {
                "match": {"model.width": 4.0, "transform.ratio": 0.5},
                "metric": "size",
                "value": 15_000_000,
                "se": None,
                "source": None,
            },
        ],
    )
    return path


def build_plain(path: Path) -> Path:
    store = Store(path)
    for i, width in enumerate((8, 16, 32, 64, 128)):
        for seed in range(1 if width != 32 else 2):
            metrics = {
                "test_accuracy": 0.95 - 0.1 / width + 0.001 * seed,
                "flops": 1000 * width * width,
                "flops_effective": 1000 * width * width,
                "params": 10 * width,
            }
            if width == 64:
                metrics["test_accuracy"] = 0.93  # dominated
            store.save(
                _record("plain", f"p{width}", seed, {"model.width": width}, metrics, index=i)
            )
    return path


FORMATS = ("table", "csv", "json", "markdown")


def commands() -> dict[str, list[str]]:
    """Label -> `bench report` arguments (before ``--db``), labels ``<db>: ...``."""
    out: dict[str, list[str]] = {}
    mixed_views = {
        "default": [],
        "wide": ["--wide"],
        "spec-a": ["--spec", "spec-a"],
        "spec-b": ["--spec", "spec-b"],
        "pareto": ["--pareto"],
        "pareto spec-a": ["--pareto", "--spec", "spec-a"],
        "pareto 1 objective": ["--pareto", "--objectives", "accuracy:max"],
        "pareto 2 objectives": ["--pareto", "--objectives", "accuracy:max,size:min"],
        "2 objectives": ["--objectives", "accuracy:max,flops:min"],
        "pareto 3 objectives": [
            "--pareto",
            "--objectives",
            "accuracy:max,flops_effective:min,latency:min",
        ],
        "4 objectives": ["--objectives", "accuracy:max,size:min,params:min,time:min"],
        "pareto extra objective": ["--pareto", "--objectives", "prune.sparsity:min,accuracy:max"],
        "replicate": ["--replicate-axes", "transform.ratio", "--spec", "spec-a"],
        "claims": ["--claims"],
        "failed": ["--failed"],
    }
    for label, args in mixed_views.items():
        for fmt in FORMATS:
            out[f"mixed: {label} --format {fmt}"] = ["report", *args, "--format", fmt]
    out["mixed: pareto --wide"] = ["report", "--pareto", "--wide"]
    out["mixed: failed spec-b"] = ["report", "--failed", "--spec", "spec-b"]
    for label, args in {"default": [], "pareto": ["--pareto"], "claims": ["--claims"]}.items():
        for fmt in FORMATS:
            out[f"plain: {label} --format {fmt}"] = ["report", *args, "--format", fmt]
    return out


NARROW = {"mixed: default --format table": 80, "mixed: pareto --format table": 60}


def outputs(folder: Path) -> dict[str, str]:
    """Every command's exit code and output over freshly built databases in ``folder``."""
    dbs = {
        "mixed": build_mixed(folder / "mixed.duckdb"),
        "plain": build_plain(folder / "plain.duckdb"),
    }
    runner = CliRunner()
    result: dict[str, str] = {}
    for label, args in commands().items():
        db = dbs[label.partition(":")[0]]
        done = runner.invoke(app, [*args, "--db", str(db)], env={"COLUMNS": None})
        result[label] = f"exit {done.exit_code}\n{done.output}"
        if label in NARROW:
            env = {"COLUMNS": str(NARROW[label])}
            done = runner.invoke(app, [*args, "--db", str(db)], env=env)
            result[f"{label} (COLUMNS={NARROW[label]})"] = f"exit {done.exit_code}\n{done.output}"
    return result


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.report_golden --write")
    with tempfile.TemporaryDirectory() as folder:
        captured = outputs(Path(folder))
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(captured, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(captured)} outputs to {GOLDEN}")
