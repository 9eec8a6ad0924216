"""Start-up: the commands that run no job (`--help`, `plugins`, `report` with every
option, `validate`, `run --dry-run`) never import torch, the text reports import neither
pandas nor numpy, `bench plugins` lays its tables out without rich, and the public names
that moved behind lazy imports are still the same objects."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchharness.records import CurvePoint, RunRecord
from benchharness.store import Store

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "specs" / "mnist_width_dct.toml"

# Runs each `bench` command (argv lists on stdin, one JSON list per line) in one process,
# in order, and prints per command its exit code and which of the modules named on its
# command line (default: torch, torchvision) were loaded so far.
DRIVER = """
import json, sys
from typer.testing import CliRunner
from benchharness.cli import app

watched = sys.argv[1:] or ["torch", "torchvision"]
runner = CliRunner()
for line in sys.stdin:
    args = json.loads(line)
    result = runner.invoke(app, args)
    loaded = sorted(m for m in watched if m in sys.modules)
    print(json.dumps({"args": args, "exit": result.exit_code, "loaded": loaded,
                      "output": result.output[-300:]}))
"""


def _record(config: int, seed: int, *, failed: bool = False) -> RunRecord:
    width, ratio = (0.5, 1.0, 2.0)[config % 3], (0.1, 0.3)[config // 3]
    return RunRecord(
        job_id=f"job{config}-{seed}",
        config_id=f"config{config}",
        spec_name="mnist_width_dct",
        spec_hash="h",
        quick=False,
        seed=seed,
        config={"model": {"width": width}, "transform": {"ratio": ratio}},
        axes={"model.width": width, "transform.ratio": ratio},
        status="failed" if failed else "completed",
        error="RuntimeError: boom" if failed else None,
        metrics={
            "test_accuracy": 0.9 + 0.01 * config + 0.002 * seed,
            "flops_effective": 1000 * (config + 1),
            "size_bits": 500 * (6 - config),
            "params": 100 * (config + 1),
        },
        curves=[CurvePoint("train", epoch, "test_accuracy", 0.5 + 0.1 * epoch) for epoch in (1, 2)],
    )


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 configurations × 3 seeds, one run failed, one claim."""
    path = tmp_path_factory.mktemp("startup") / "bench.duckdb"
    store = Store(path)
    for config in range(6):
        for seed in range(3):
            store.save(_record(config, seed, failed=(config, seed) == (5, 2)))
    store.save_claims(
        "mnist_width_dct",
        [
            {
                "match": {"model.width": 1.0, "transform.ratio": 0.1},
                "metric": "test_accuracy",
                "value": 0.91,
                "se": 0.001,
                "source": "test",
            }
        ],
    )
    return path


def _run_in_one_process(
    commands: list[list[str]], cwd: Path, watched: tuple[str, ...] = ()
) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, *watched],
        input="".join(json.dumps(args) + "\n" for args in commands),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_commands_that_run_no_job_do_not_import_torch(study_db: Path, tmp_path: Path) -> None:
    db = ["--db", str(study_db)]
    commands = [
        ["--help"],
        ["report", "--help"],
        ["plugins"],
        ["plugins", "--kind", "compressor"],
        ["plugins", "--format", "json"],
        ["validate", str(SPEC)],
        ["validate", str(SPEC), "--quick"],
        ["run", str(SPEC), "--dry-run"],
        ["report", *db],
        ["report", "--pareto", *db],
        ["report", "--pareto", "--objectives", "accuracy:max,size:min", "--format", "json", *db],
        ["report", "--format", "markdown", "--wide", *db],
        ["report", "--claims", *db],
        ["report", "--failed", *db],
        ["report", "--job", "job5-2", *db],
        ["report", "--noise", *db],
        ["report", "--curves", *db],
        ["report", "--compare", "config0", "config1", *db],
        ["report", "--replicate-axes", "transform.ratio", *db],
        ["report", "--against", str(study_db), *db],
        ["report", "--sql", "SELECT count(*) AS n FROM runs", *db],
        ["report", "--plot", str(tmp_path / "plots"), *db],
        ["report", "--html", str(tmp_path / "report.html"), *db],
        ["export", str(tmp_path / "export"), *db],
    ]
    results = _run_in_one_process(commands, REPO)
    assert [r["args"] for r in results] == commands
    for result in results:
        # a command that failed early would prove nothing about its imports
        assert result["exit"] == 0, result
        assert result["loaded"] == [], f"bench {' '.join(result['args'])} imported torch"
    sql = next(r for r in results if "--sql" in r["args"])
    assert "18" in sql["output"]  # every stored run was read


def test_text_reports_import_neither_pandas_nor_numpy(study_db: Path) -> None:
    """`bench report` with or without --pareto, claims, --spec, objectives (1 to 3),
    --failed and --job, in every text format; all in one process, so the first command
    that imported pandas or numpy would show it in every later one."""
    db = ["--db", str(study_db)]
    views = [
        [],
        ["--pareto"],
        ["--wide"],
        ["--spec", "mnist_width_dct"],
        ["--pareto", "--objectives", "accuracy:max,size:min"],
        ["--pareto", "--objectives", "accuracy:max,params:min,size:min"],
        ["--objectives", "accuracy:max"],
        ["--replicate-axes", "transform.ratio"],
        ["--claims"],
        ["--failed"],
    ]
    formats = ["table", "csv", "json", "markdown"]
    commands = [["report", *view, "--format", fmt, *db] for view in views for fmt in formats]
    commands.append(["report", "--job", "job5-2", *db])
    results = _run_in_one_process(commands, REPO, ("pandas", "numpy", "torch"))
    assert [r["args"] for r in results] == commands
    for result in results:
        assert result["exit"] == 0, result
        assert result["loaded"] == [], f"bench {' '.join(result['args'])} imported them"
    pareto = next(r for r in results if r["args"][:3] == ["report", "--pareto", "--format"])
    assert "*" in pareto["output"]  # front rows were printed
    # and the driver does see pandas where a command needs it
    plotted = _run_in_one_process([["report", "--noise", *db]], REPO, ("pandas",))
    assert plotted[0]["loaded"] == ["pandas"]


def test_plugins_table_is_laid_out_without_rich() -> None:
    """`bench plugins` renders its tables with tabulate: rich's console and table, whose
    layout of the tables took ~0.05 s of the command, are not imported for it (tabulate
    is: the driver does see this command's imports)."""
    commands = [["plugins"], ["plugins", "--kind", "compressor"]]
    results = _run_in_one_process(commands, REPO, ("rich.console", "rich.table", "tabulate"))
    assert [r["args"] for r in results] == commands
    for result in results:
        assert result["exit"] == 0, result
        assert result["loaded"] == ["tabulate"], result


def test_lazily_imported_public_names_are_the_defining_modules_objects() -> None:
    import benchharness
    import benchharness_plugins.compressors.quantization as quantization
    import benchharness_plugins.compressors.sparse_lowrank as sparse_lowrank
    import benchharness_plugins.models as models
    import benchharness_plugins.models_cifar as models_cifar
    from benchharness import api, compression, errors, hookspecs, plugin_tables, training_api
    from benchharness_plugins import models_cifar_nets, models_nets
    from benchharness_plugins.compressors import kmeans, sparse_lowrank_theta

    homes = (api, compression, errors, hookspecs, plugin_tables, training_api)
    for name in benchharness.__all__:
        if name == "__version__":
            continue
        value = getattr(benchharness, name)
        assert any(getattr(home, name, None) is value for home in homes), name
    assert models.LeNet300 is models_nets.LeNet300
    assert models.ConvNet is models_nets.ConvNet
    for name in ("BasicBlock", "Bottleneck", "CifarResNet", "vgg_network"):
        assert getattr(models_cifar, name) is getattr(models_cifar_nets, name)
    assert quantization.kmeans_1d is kmeans.kmeans_1d
    assert quantization.optimal_kmeans_1d is kmeans.optimal_kmeans_1d
    assert sparse_lowrank.SparseLowRankLayer is sparse_lowrank_theta.SparseLowRankLayer
    with pytest.raises(AttributeError):
        benchharness.NoSuchName  # noqa: B018
    with pytest.raises(AttributeError):
        models.NoSuchNet  # noqa: B018
