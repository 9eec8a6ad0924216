"""benchmarks/speed_table.py's pure parts: rows and formatting, the study projection's
arithmetic against a hand count, and fail-soft sections. No timing assertions."""

from __future__ import annotations

import math
import platform
import re
import statistics
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import speed_table  # noqa: E402
from benchmarks.speed_rows import (  # noqa: E402
    Row,
    format_table,
    guarded,
    mean_se,
    rows_from_dicts,
    speedup,
)
from benchmarks.study_projection import Costs, JobWork, project_seconds, study_work  # noqa: E402


def test_table_is_markdown_with_one_line_per_row():
    table = format_table(
        [
            Row("dct", "70k images", "0.40 s", "2.00 s", 5.0, "≤ 0.5 s", "a | b"),
            Row("memory", "dataset", "210 MiB"),
        ]
    )
    lines = table.splitlines()
    assert lines[0] == "| section | figure | harness | baseline | ratio | target | note |"
    assert lines[1] == "|---|---|---|---|---|---|---|"
    assert lines[2] == "| dct | 70k images | 0.40 s | 2.00 s | 5.00× | ≤ 0.5 s | a \\| b |"
    assert lines[3] == "| memory | dataset | 210 MiB |  |  |  |  |"
    # seven cells between unescaped pipes on every line
    assert all(len(re.split(r"(?<!\\)\|", line)) == 9 for line in lines)


def test_speedup_is_baseline_over_harness_and_none_when_undefined():
    assert speedup(0.5, 2.0) == 4.0
    assert speedup(None, 1.0) is None
    assert speedup(1.0, None) is None
    assert speedup(0.0, 1.0) is None
    assert speedup(math.nan, 1.0) is None


def test_mean_se_matches_statistics():
    values = [0.9, 0.92, 0.95]
    se = statistics.stdev(values) / math.sqrt(3)
    assert mean_se(values) == f"{statistics.mean(values):.4f} ± {se:.4f}"
    assert mean_se([0.5]) == "0.5000"


def test_rows_from_dicts_reads_seconds_or_a_given_ratio():
    rows = rows_from_dicts(
        "overhead",
        [
            {"name": "epoch α=0.5", "harness_s": 2.0, "plain_s": 1.0, "eval_ratio": 0.9},
            {"command": "bench --help", "ratio": 3.0},
        ],
        target="≥ 1",
    )
    assert rows[0].figure == "epoch α=0.5"
    assert rows[0].ratio == 0.5  # plain 1 s ÷ harness 2 s
    assert (rows[0].harness, rows[0].baseline) == ("2.00 s", "1.00 s")
    assert "eval_ratio=0.9" in rows[0].note
    assert rows[1].figure == "bench --help" and rows[1].ratio == 3.0
    assert all(r.target == "≥ 1" and r.section == "overhead" for r in rows)


def test_overhead_dicts_become_rows():
    """The keys of compare_baseline.measure_overhead's dicts."""
    (row,) = rows_from_dicts(
        "overhead",
        [{"name": "training epoch α=0.5", "harness_s": 1.2, "plain_s": 1.5, "alpha": 0.5,
          "harness_cpu_s": 2.0, "plain_cpu_s": 2.5, "samples": 12000, "data": "mnist"}],
    )  # fmt: skip
    assert (row.figure, row.harness, row.baseline) == ("training epoch α=0.5", "1.20 s", "1.50 s")
    assert row.ratio == pytest.approx(1.25)


def test_startup_rows_compare_each_command_with_importing_torch():
    """The keys of startup.measure_startup's dicts."""
    from benchmarks.speed_sections import startup_rows

    rows = startup_rows(
        [
            {"command": "python -c pass", "median_s": 0.02, "imports_torch": None},
            {"command": 'python -c "import torch"', "median_s": 1.5, "imports_torch": None},
            {
                "command": "bench --help",
                "median_s": 0.25,
                "vs_python": 12.5,
                "imports_torch": False,
            },
        ]
    )
    assert [r.figure for r in rows] == [
        "python -c pass",
        'python -c "import torch"',
        "bench --help",
    ]
    assert rows[2].ratio == pytest.approx(6.0) and rows[2].baseline == "1.50 s"
    assert rows[2].note == "no torch" and rows[2].target == "≤ 0.3 s"
    assert rows[1].ratio == pytest.approx(1.0) and rows[0].target == ""


def test_a_failing_section_is_one_row_naming_its_error():
    def broken():
        raise ValueError("no such column\nsecond line")

    def missing():
        from benchmarks.no_such_module import nothing  # noqa: F401

        return []

    (error,) = guarded("report", broken)
    assert (error.section, error.figure, error.note) == (
        "report",
        "error",
        "ValueError: no such column",
    )
    (absent,) = guarded("startup", missing)
    assert absent.figure == "not available" and "no_such_module" in absent.note
    ok = [Row("dct", "x")]
    assert guarded("dct", lambda: ok) == ok


def test_main_prints_every_section_even_after_one_fails(monkeypatch, capsys):
    def fails(scale, data_dir):
        raise RuntimeError("boom")

    def works(scale, data_dir):
        return [Row("b", "fine", "1.0 s", "2.0 s", 2.0)]

    monkeypatch.setattr(speed_table, "SECTIONS", {"a": fails, "b": works})
    assert speed_table.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| a | error |  |  |  |  | RuntimeError: boom |" in out
    assert "| b | fine | 1.0 s | 2.0 s | 2.00× |  |  |" in out
    assert out.index("| a | error") < out.index("| b | fine")
    assert "load average" in out.splitlines()[1]


def test_only_rejects_an_unknown_section():
    with pytest.raises(SystemExit) as exc:
        speed_table.main(["--only", "nope"])
    assert exc.value.code == 2


# --- the study projection ------------------------------------------------------------------

STEP = {("A", 1): 0.01, ("A", 2): 0.015, ("B", 1): 0.1}
EVAL = {("A", 1): 0.1, ("A", 2): 0.12, ("B", 1): 0.5}


def test_projection_matches_a_hand_count():
    a = JobWork("A", epochs=3, train_steps=10, eval_batches=2)
    b = JobWork("B", epochs=1, train_steps=4, eval_batches=1)
    costs = Costs(STEP, EVAL)
    # alone: 3 × (10 × 0.01 + 2 × 0.1) = 0.9 s per A job; 1 × (4 × 0.1 + 0.5) = 0.9 s for B
    assert project_seconds([[a], [a], [b]], costs) == pytest.approx(0.9 + 0.9 + 0.9)
    # fused pair: 3 × (10 × 0.015 + 2 × 0.12) = 1.17 s, less than 2 × 0.9
    assert project_seconds([[a, a], [b]], costs) == pytest.approx(1.17 + 0.9)


def test_projection_runs_a_group_alone_where_fusing_is_slower():
    a = JobWork("A", epochs=3, train_steps=10, eval_batches=2)
    slow = Costs({**STEP, ("A", 2): 0.05}, EVAL)  # fused: 3 × (0.5 + 0.24) = 2.22 s > 1.8 s
    assert project_seconds([[a, a]], slow) == pytest.approx(1.8)


def test_projection_rejects_a_group_of_unequal_jobs():
    a = JobWork("A", epochs=3, train_steps=10, eval_batches=2)
    with pytest.raises(ValueError, match="share shape"):
        project_seconds(
            [[a, JobWork("A", epochs=2, train_steps=10, eval_batches=2)]], Costs(STEP, EVAL)
        )


def test_study_work_counts_steps_per_job_from_the_spec():
    from benchharness.plugins import get_registry

    registry = get_registry()
    spec = REPO / "tests" / "specs" / "cli_digits.toml"
    jobs, work, shapes = study_work(spec, REPO, registry)
    data = registry.create("dataset", "digits", {}).load(REPO)
    n_train, n_test = data.train_x.shape[0], data.test_x.shape[0]
    assert len(jobs) == 8  # 2 hidden sizes × 2 learning rates × 2 seeds
    assert len(shapes) == 2  # the learning rate and the seed leave shapes equal
    for job in jobs:
        w = work[job.id]
        assert w.epochs == 2
        assert w.train_steps == -(-n_train // 64)  # batch_size 64, last batch partial
        assert w.eval_batches == -(-n_test // 1000)
        model, input_shape, classes = shapes[w.shape]
        assert model == job.config["model"]
        assert input_shape == tuple(data.train_x.shape[1:]) and classes == data.num_classes


@pytest.mark.parametrize("selection", ["magnitude", "lowfreq"])
def test_per_image_dct_baseline_computes_what_the_transform_does(selection):
    """The DCT rows' baseline equals the batched float64 reference and the transform."""
    import numpy as np

    from benchharness.plugins import get_registry
    from benchmarks import synthetic_data
    from benchmarks.compare_baseline import scipy_dct_reference
    from benchmarks.speed_sections import per_image_dct

    data = synthetic_data(8, 0)
    x = data.train_x.double().numpy()
    transform = get_registry().create("transform", "dct", {"ratio": 0.3, "selection": selection})
    k = transform.kept(28, 28)
    ours = per_image_dct(x, k, selection)
    np.testing.assert_allclose(ours, scipy_dct_reference(x, k, selection), atol=1e-12)
    np.testing.assert_allclose(ours, transform.apply(data).train_x.double().numpy(), atol=1e-4)


def test_allocator_benchmark_times_each_setting_in_its_own_process():
    """Each side's subprocess has the setting asked for, or the benchmark says so."""
    from benchmarks.allocator_effect import step_seconds

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("the setting is glibc's")
    for tuned in (True, False):
        assert step_seconds(0.5, tuned, warm=1, steps=1) > 0
