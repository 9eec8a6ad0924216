"""Bad specs fail at `bench validate` (and before any job of `bench run`): one line per
problem naming the file and key path, exit 2 — each case the issue probed, for real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from benchharness import report
from benchharness.claims import metric_problem
from benchharness.cli import app
from benchharness.plugins import get_registry

BASE = """
[dataset]
name = "digits"
[model]
name = "lenet300"
hidden = [16]
[optimizer]
name = "sgd"
epochs = 1
"""
SCHEME = """
[dataset]
name = "digits"
[model]
name = "lenet300"
hidden = [16]
[compressor]
name = "quantize"
k = 2
"""


def bench(*args: str | Path) -> Result:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"bench {args} crashed") from result.exception
    return result


def problems(tmp_path: Path, text: str, *args: str) -> list[str]:
    """The problem lines of `bench validate` on ``text`` (asserting exit 2, no traceback)."""
    path = tmp_path / "x.toml"
    path.write_text(text)
    result = bench("validate", path, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    return [line.removeprefix(f"{path}: ") for line in lines]


def test_the_base_spec_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(BASE.replace("epochs = 1", "epochs = 1\nlr = 1"))  # an int is a float
    result = bench("validate", path)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("lr = inf", "optimizer.lr — input should be a finite number, got inf"),
        ("lr = nan", "optimizer.lr — input should be a finite number, got nan"),
        ("lr = true", "optimizer.lr — input should be a valid number, got true"),
        ('lr = "0.1"', 'optimizer.lr — input should be a valid number, got "0.1"'),
        ("batch_size = 2.0", "optimizer.batch_size — input should be a valid integer, got 2.0"),
    ],
)
def test_strict_finite_numbers(tmp_path: Path, line: str, expected: str) -> None:
    assert problems(tmp_path, BASE.replace("epochs = 1", f"epochs = 1\n{line}")) == [expected]


def test_set_of_an_overflowing_float(tmp_path: Path) -> None:
    lines = problems(tmp_path, BASE, "--set", "optimizer.lr=1e999")
    assert lines == ["optimizer.lr — input should be a finite number, got inf"]


def test_harness_sections_reject_non_finite_too(tmp_path: Path) -> None:
    text = BASE + "[[claims]]\nmetric = 'test_accuracy'\nvalue = inf\n"
    assert problems(tmp_path, text) == ["claims.0.value — input should be a finite number, got inf"]


@pytest.mark.parametrize("scheme", ["dc", "lc", "idc", "retrain"])
def test_nested_reference_table_is_validated(tmp_path: Path, scheme: str) -> None:
    text = SCHEME + f'[optimizer]\nname = "{scheme}"\nreference = {{ name = "sgdd" }}\n'
    (line,) = problems(tmp_path, text)
    assert line.startswith("optimizer.reference.name — unknown optimizer 'sgdd' (known: adam")
    text = SCHEME + f'[optimizer]\nname = "{scheme}"\nreference = {{ name = "sgd", lr = inf }}\n'
    assert problems(tmp_path, text) == [
        "optimizer.reference.lr — input should be a finite number, got inf"
    ]
    text = SCHEME + f'[optimizer]\nname = "{scheme}"\nreference = {{ name = "sgd", lrr = 1 }}\n'
    (line,) = problems(tmp_path, text)
    assert line.startswith("optimizer.reference.lrr — unknown option for optimizer 'sgd'")


def test_nested_tables_in_a_matrix_axis_and_in_additive_parts(tmp_path: Path) -> None:
    text = SCHEME.replace('[compressor]\nname = "quantize"\nk = 2\n', "") + (
        '[optimizer]\nname = "lc"\n'
        "[compressor]\n"
        'name = "additive"\n'
        'parts = [{ name = "quantize", k = true }, { name = "prune", keep = 0.05 }]\n'
        "[matrix]\n"
        '"optimizer.reference" = [{ name = "sgd" }, { name = "adam", lr = -1 }]\n'
    )
    lines = problems(tmp_path, text)
    assert "compressor.parts.0.k — input should be a valid integer, got true" in lines
    assert "optimizer.reference.lr — input should be greater than 0, got -1" in lines
    assert len(lines) == 2, lines


def test_typo_in_quick_is_found_without_quick(tmp_path: Path) -> None:
    text = BASE + '[quick]\n"optimizer.epoch" = 2\n'
    (line,) = problems(tmp_path, text)
    assert line.startswith("optimizer.epoch — unknown option for optimizer 'sgd'")
    assert line.endswith("(with --quick)")


def test_claim_metric_must_be_known(tmp_path: Path) -> None:
    text = BASE + "[[claims]]\nmetric = 'test_acuracy'\nvalue = 0.9\n"
    (line,) = problems(tmp_path, text)
    assert line.startswith("claims.0.metric — unknown metric (did you mean 'test_accuracy'?)")
    text = BASE + "[[claims]]\nmetric = 'quantise.distortion'\nvalue = 0.9\n"
    (line,) = problems(tmp_path, text)
    assert "'quantise' is not a registered plugin" in line
    path = tmp_path / "ok.toml"
    for metric in ("test_accuracy", "accuracy", "greedy_random.distortion", "act.fc1.mean"):
        path.write_text(BASE + f"[[claims]]\nmetric = '{metric}'\nvalue = 0.9\n")
        assert bench("validate", path).exit_code == 0, metric


def test_every_report_alias_is_a_claim_metric() -> None:
    registry = get_registry()
    assert all(metric_problem(name, registry) is None for name in report.ALIASES)


def test_arrays_nested_500_deep_are_one_line(tmp_path: Path) -> None:
    deep = "[" * 500 + "]" * 500
    (line,) = problems(tmp_path, BASE.replace("hidden = [16]", f"hidden = {deep}"))
    assert "nested too deep" in line
    deep40 = "[" * 40 + "1" + "]" * 40
    assert problems(tmp_path, BASE.replace("hidden = [16]", f"hidden = {deep40}")) == [
        "model.hidden.0... — arrays or tables nested more than 32 levels deep"
    ]
    (line,) = problems(tmp_path, BASE, "--set", f"model.hidden={deep}")
    assert line.startswith("--set model.hidden=[[[") and "nested too deep" in line


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\x0c", "\r"])
def test_a_quoted_line_separator_stays_on_one_line(tmp_path: Path, separator: str) -> None:
    # found by the hypothesis test: U+0085 in a quoted value split the message in two
    (line,) = problems(tmp_path, BASE.replace('name = "digits"', f'name = "a{separator}b"'))
    assert separator.encode("unicode_escape").decode() in line


def test_large_matrix_needs_yes(tmp_path: Path) -> None:
    lrs = ", ".join(str(0.001 * (i + 1)) for i in range(101))
    seeds = ", ".join(str(s) for s in range(100))
    text = BASE + f'[matrix]\n"optimizer.lr" = [{lrs}]\nseeds = [{seeds}]\n'
    (line,) = problems(tmp_path, text)
    assert re.fullmatch(
        r"matrix — expands to up to 10,100 jobs \(over 10,000\); pass --yes to expand it anyway",
        line,
    )
    path = tmp_path / "x.toml"
    for command in (["validate"], ["run", "--dry-run"]):
        assert bench(*command, path).exit_code == 2
    result = bench("validate", path, "--yes")
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("ok — 10100 jobs (101 configurations × seeds)")
    result = bench("run", path, "--dry-run", "--yes")
    assert result.exit_code == 0
    out = result.output.splitlines()
    assert len(out) == 10100 and out[-1].startswith("10100/10100 ")
