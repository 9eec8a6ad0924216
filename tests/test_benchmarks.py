"""The asv benchmarks and compare_baseline.py run (once each, at tiny sizes).

No timing assertions: speed targets live in the benchmarks themselves, never in tests.
This only proves that every benchmark runs, so that `asv run` does not discover broken
ones weeks later.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = REPO / "benchmarks"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PREFIXES = ("time_", "timeraw_", "peakmem_", "mem_", "track_")
MODULES = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))

# Tiny sizes, set on each module before its benchmarks run.
TINY: dict[str, dict[str, object]] = {
    "bench_training": {
        "N_TRAIN": 256,
        "N_TEST": 64,
        "OVERHEAD_SAMPLES": 128,
        "OVERHEAD_REPEATS": 1,
        "WARMUP_SAMPLES": 32,
    },
    "bench_transforms": {"N_IMAGES": 64},
    "bench_matrix": {"WIDTHS": [0.5, 4.0], "RATIOS": [0.3, 1.0], "LRS": [0.1], "SEEDS": [0, 1]},
    "bench_store": {"N_SAVE": 3, "N_STORED": 6, "N_QUERY": 10, "EPOCHS": 2},
    "bench_compressors": {"HIDDEN": [16, 12]},
    "bench_metrics": {"LATENCY_REPEATS": 2, "LATENCY_WARMUP": 1},
    "bench_startup": {"REPEATS": 1, "COMMANDS": ["bench --help"]},
    "bench_speed": {
        "MEMBERS": 2,
        "STEPS": 1,
        "REPEATS": 1,
        "REPORT_RUNS": 50,
        "REPORT_SEED_RECORDS": 5,
        "DCT_IMAGES": 64,
        "DCT_LOOP_IMAGES": 8,
        "STUDY_SPEC": REPO / "tests" / "specs" / "cli_digits.toml",
        "STUDY_STEPS": 1,
    },
}


def _benchmarks(module) -> list[tuple[str, type | None, str]]:
    """(asv name, class or None, attribute) of every benchmark, found as asv finds them."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if inspect.isclass(value):
            for attr, _ in inspect.getmembers(value, inspect.isfunction):
                if attr.startswith(PREFIXES):
                    found.append((f"{module.__name__.split('.')[-1]}.{name}.{attr}", value, attr))
        elif inspect.isfunction(value) and name.startswith(PREFIXES):
            found.append((f"{module.__name__.split('.')[-1]}.{name}", None, name))
    return found


def _param_grid(owner) -> list[tuple]:
    params = getattr(owner, "params", None)
    if not params:
        return [()]
    if not isinstance(params[0], list | tuple):  # a single parameter given as a flat list
        params = [params]
    return list(itertools.product(*params))


def _run_timeraw(name: str, result) -> None:
    """A timeraw_ benchmark returns code (and setup) that asv times in a fresh
    interpreter, where `benchmarks` is not importable; here it runs in-process."""
    code, setup = result if isinstance(result, tuple) else (result, "")
    assert "benchmarks" not in code + setup, f"{name}: a fresh interpreter has no `benchmarks`"
    namespace: dict[str, object] = {}
    exec(compile(setup, f"{name}:setup", "exec"), namespace)
    exec(compile(code, name, "exec"), namespace)


def test_every_module_has_tiny_sizes_that_exist():
    assert MODULES, "no benchmarks/bench_*.py found"
    for name in MODULES:
        module = importlib.import_module(f"benchmarks.{name}")
        assert name in TINY, f"add tiny sizes for {name} to TINY"
        for attr in TINY[name]:
            assert hasattr(module, attr), f"{name} has no size constant {attr}"


def test_discovery_matches_asv():
    """This file runs exactly the benchmarks asv discovers."""
    from asv_runner.discovery import disc_benchmarks

    ours = set()
    for name in MODULES:
        ours |= {n for n, _, _ in _benchmarks(importlib.import_module(f"benchmarks.{name}"))}
    assert ours == {b.name for b in disc_benchmarks(str(BENCH_DIR))}


@pytest.mark.parametrize("module_name", MODULES)
def test_benchmarks_run_once(module_name, monkeypatch, tmp_path):
    module = importlib.import_module(f"benchmarks.{module_name}")
    for attr, value in TINY.get(module_name, {}).items():
        monkeypatch.setattr(module, attr, value)
    monkeypatch.chdir(tmp_path)  # asv runs setup_cache in a scratch directory too
    benchmarks = _benchmarks(module)
    assert benchmarks, f"{module_name} defines no benchmark"
    caches: dict[type, tuple] = {}
    for name, cls, attr in benchmarks:
        owner = cls if cls is not None else getattr(module, attr)
        if cls is not None and hasattr(cls, "setup_cache") and cls not in caches:
            caches[cls] = (cls().setup_cache(),)
        for combo in _param_grid(owner):
            args = caches.get(cls, ()) + tuple(combo)
            if cls is None:
                getattr(module, "setup", lambda *a: None)(*args)
                result = owner(*args)
                getattr(module, "teardown", lambda *a: None)(*args)
            else:
                instance = cls()
                if hasattr(instance, "setup"):
                    instance.setup(*args)
                try:
                    result = getattr(instance, attr)(*args)
                finally:
                    if hasattr(instance, "teardown"):
                        instance.teardown(*args)
            if attr.startswith("timeraw_"):
                _run_timeraw(name, result)
            if attr.startswith("track_"):
                assert isinstance(result, int | float), f"{name}{combo} returned {result!r}"
                assert math.isnan(result) or result >= 0, f"{name}{combo} returned {result}"


def test_matrix_benchmark_spec_has_the_advertised_size():
    from benchmarks import bench_matrix

    assert bench_matrix.expected_jobs() == 1000  # at the real sizes


def test_compare_baseline_prints_ratios():
    result = subprocess.run(
        [
            sys.executable,
            str(BENCH_DIR / "compare_baseline.py"),
            "--repeats",
            "1",
            "--samples",
            "512",
            "--images",
            "1000",
            "--threads",
            "1",
            "--max-ratio",
            "1000",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(
        r"^RATIO training_epoch\[512\] harness/plain_pytorch = \d+\.\d+$",
        result.stdout,
        re.MULTILINE,
    ), result.stdout
    assert re.search(
        r"^RATIO dct_magnitude\[1000\] harness/scipy_float64 = \d+\.\d+$",
        result.stdout,
        re.MULTILINE,
    ), result.stdout


def test_compare_baseline_fails_only_past_max_ratio(capsys):
    """(A ratio within --max-ratio exits 0: test_compare_baseline_prints_ratios.)"""
    from benchmarks import compare_baseline

    tiny = ["--repeats", "1", "--samples", "32", "--images", "16"]
    assert compare_baseline.main([*tiny, "--max-ratio", "1e-9"]) == 1
    assert "exceeds --max-ratio" in capsys.readouterr().err


def test_scipy_reference_agrees_with_the_dct_transform():
    """The baseline computes the same thing as the transform it is compared with."""
    import numpy as np

    from benchharness.plugins import get_registry
    from benchmarks import synthetic_data
    from benchmarks.compare_baseline import scipy_dct_reference

    data = synthetic_data(32, 0)
    for selection in ("magnitude", "lowfreq"):
        transform = get_registry().create(
            "transform", "dct", {"ratio": 0.3, "selection": selection}
        )
        ours = transform.apply(data).train_x.double().numpy()
        ref = scipy_dct_reference(data.train_x.double().numpy(), transform.kept(28, 28), selection)
        np.testing.assert_allclose(ours, ref, atol=1e-4)
