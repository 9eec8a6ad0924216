"""A real third-party package (tests/example_plugin, with its own pyproject.toml and
entry point) is installed and its plugins are used by a spec, in a separate process."""

from __future__ import annotations

import json
import os
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
