"""A real third-party package (tests/example_plugin, with its own pyproject.toml and
entry point) is installed and its plugins are used by a spec, in a separate process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent / "example_plugin"


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory) -> Path:
    """The example package installed (built as a wheel, dist-info and entry point) into
    its own directory, so the test environment itself is left untouched."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "--target",
            str(site),
            str(EXAMPLE),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert any(
        p.name.startswith("bench_example_plugin") and p.suffix == ".dist-info"
        for p in site.iterdir()
    )
    return site


def _bench(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))
    return subprocess.run(
        [sys.executable, "-m", "benchharness", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_bench_plugins_lists_the_installed_package(installed_site, tmp_path):
    result = _bench(installed_site, "plugins", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    models = {p["name"]: p for p in listing["model"]}
    transforms = {p["name"]: p for p in listing["transform"]}
    assert "bench-example-plugin" in models["logreg"]["owner"]
    assert models["logreg"]["version"] == "0.1.0"
    assert [o["name"] for o in transforms["gaussian_noise"]["options"]] == ["std", "seed"]


def test_a_spec_runs_with_the_installed_plugins(installed_site, tmp_path):
    db = tmp_path / "bench.duckdb"
    result = _bench(
        installed_site, "run", str(EXAMPLE / "spec.toml"), "--db", str(db), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    result = _bench(installed_site, "report", "--db", str(db), "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert sorted(row["transform.std"] for row in rows) == [0.0, 0.5]
    # 3 epochs of logistic regression on digits: far above chance (10 %) without noise.
    clean = next(row for row in rows if row["transform.std"] == 0.0)
    assert clean["test_accuracy_mean"] > 0.85


def test_without_the_package_the_spec_names_the_missing_plugin(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchharness", "validate", str(EXAMPLE / "spec.toml")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert "unknown" in result.stderr and "gaussian_noise" in result.stderr
    assert "Traceback" not in result.stderr


def test_third_party_compressors_run_alone_and_as_additive_parts(installed_site, tmp_path):
    """The package's data-aware compressor compresses a trained model with calibration
    data; its data-free one is a part of the built-in `additive` (resolved through the
    registry)."""
    db = tmp_path / "bench.duckdb"
    spec = EXAMPLE / "compress_spec.toml"
    result = _bench(installed_site, "run", str(spec), "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    sql = (
        "SELECT json_extract_string(config, '$.compressor.name') AS compressor, status,"
        " compression_ratio, test_accuracy, json_extract(extra, '$.\"act_prune.kept_fraction\"')"
        " AS kept FROM runs ORDER BY compressor"
    )
    result = _bench(
        installed_site, "report", "--db", str(db), "--sql", sql, "--format", "json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    act, additive = json.loads(result.stdout)
    assert act["compressor"] == "act_prune" and additive["compressor"] == "additive"
    assert act["status"] == additive["status"] == "completed"
    # MLP 64-32-10: dense 32 bits × (2048 + 320 weights + 42 biases). act_prune keeps
    # round(0.3·64) = 19 of each fc1 row and round(0.3·32) = 10 of each fc2 row, each a
    # 32-bit value + an 11-bit (2048) or 9-bit (320) position.
    dense = 32 * (2048 + 320 + 42)
    assert float(act["kept"]) == pytest.approx((32 * 19 + 10 * 10) / 2368)
    assert act["compression_ratio"] == pytest.approx(dense / (32 * 19 * 43 + 100 * 41 + 42 * 32))
    # additive: pow2 codes (1 sign + ⌈log2 5⌉ bits) per weight + a 32-bit top exponent per
    # layer, plus 118 pruned corrections with 9- or 11-bit positions (split data-dependent)
    pow2 = 2368 * 4 + 2 * 32
    low, high = (dense / (pow2 + 118 * (32 + b) + 42 * 32) for b in (11, 9))
    assert low <= additive["compression_ratio"] <= high
    assert act["test_accuracy"] > 0.5 and additive["test_accuracy"] > 0.5


def test_third_party_wrapper_runs_a_builtin_optimizer(installed_site, tmp_path):
    """The package's `clipped` optimizer runs the built-in sgd through ctx.train_with."""
    db = tmp_path / "bench.duckdb"
    spec = EXAMPLE / "wrap_spec.toml"
    result = _bench(installed_site, "run", str(spec), "--db", str(db), cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    sql = (
        "SELECT json_extract_string(config, '$.optimizer.name') AS optimizer, status,"
        " test_accuracy, (SELECT count(*) FROM curves c WHERE c.job_id = runs.job_id"
        " AND c.phase = 'train' AND c.name = 'test_accuracy') AS epochs"
        " FROM runs ORDER BY optimizer"
    )
    result = _bench(
        installed_site, "report", "--db", str(db), "--sql", sql, "--format", "json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    clipped, sgd = json.loads(result.stdout)
    assert (clipped["optimizer"], sgd["optimizer"]) == ("clipped", "sgd")
    assert clipped["status"] == sgd["status"] == "completed"
    assert clipped["epochs"] == sgd["epochs"] == 3  # the base's own loop and logging
    assert clipped["test_accuracy"] > 0.8 and sgd["test_accuracy"] > 0.8
    assert clipped["test_accuracy"] != sgd["test_accuracy"]  # the wrapping changed training


# ------------------------------------------------ a broken package beside a good one

BROKEN = Path(__file__).parent / "broken_plugin"
BROKEN_LINE = (
    "plugin package 'bench-broken' (entry point broken = bench_brokn): "
    "ModuleNotFoundError: No module named 'bench_brokn'"
)
WARNING = f"warning: {BROKEN_LINE}; its plugins are not available"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    """The example package and tests/broken_plugin (whose entry point names the module
    `bench_brokn`, a typo) installed side by side; both sources are copied first so that
    the build leaves nothing in the checkout."""
    root = tmp_path_factory.mktemp("broken")
    site = root / "site"
    sources = []
    for package in (EXAMPLE, BROKEN):
        copy = root / package.name
        shutil.copytree(package, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
        sources.append(str(copy))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
        + ["--no-build-isolation", "--target", str(site), *sources],
        check=True,
        capture_output=True,
        text=True,
    )
    assert (site / "bench_broken-0.1.0.dist-info").is_dir()
    return site


def test_a_broken_entry_point_is_one_warning_line_and_bench_plugins_works(broken_site, tmp_path):
    result = _bench(broken_site, "plugins", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [WARNING]
    models = {p["name"]: p for p in json.loads(result.stdout)["model"]}
    assert models["logreg"]["owner"] == "bench-example-plugin (entry point example)"
    assert "lenet300" in models


def test_a_spec_that_does_not_need_the_broken_package_validates(broken_site, tmp_path):
    result = _bench(broken_site, "validate", str(EXAMPLE / "spec.toml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(": ok — 2 jobs (2 configurations × seeds)")
    assert result.stderr.splitlines() == [WARNING]


def test_an_unknown_plugin_names_the_broken_package_as_a_likely_cause(broken_site, tmp_path):
    spec = str(EXAMPLE / "spec.toml")
    result = _bench(broken_site, "validate", spec, "--set", "model.name=bogus", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    warning, error = result.stderr.splitlines()
    assert warning == WARNING
    assert error.startswith(f"{spec}: model.name — unknown model 'bogus' (known: ")
    assert error.endswith(f"; it may come from a plugin package that failed to load: {BROKEN_LINE}")
