"""Data-dependent checks: once the data is loaded and before any job trains, a subset
larger than its split or a model that cannot take the input shape is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from benchharness import BenchError, Model, PluginOptions, hookimpl
from benchharness.cli import app
from benchharness.matrix import load_jobs
from benchharness.plugins import get_registry
from benchharness.preflight import check_jobs

BASE = """
name = "pf"
[dataset]
name = "digits"
[model]
name = "lenet300"
hidden = [8]
[optimizer]
name = "sgd"
epochs = 1
[measure]
latency = false
"""


class FixedInput(Model):
    """A model written for 28×28 inputs only (a Linear of 784 features)."""

    name = "pf_fixed784"

    class Options(PluginOptions):
        pass

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))


class WrongOutput(Model):
    """A model whose output is not one score per class."""

    name = "pf_wrong_output"

    class Options(PluginOptions):
        pass

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(int(torch.Size(input_shape).numel()), 3))


class _Plugin:
    @hookimpl
    def register_models(self, register):
        register(FixedInput)
        register(WrongOutput)


@pytest.fixture(scope="module")
def registry():
    return get_registry([_Plugin()])


def check(tmp_path: Path, text: str, registry, data_dir: Path) -> list[str]:
    path = tmp_path / "pf.toml"
    path.write_text(text)
    _, jobs = load_jobs(path, registry)
    with pytest.raises(BenchError) as info:
        check_jobs(jobs, registry, data_dir)
    return str(info.value).splitlines()


def test_valid_jobs_pass(tmp_path: Path, registry, data_dir: Path) -> None:
    path = tmp_path / "pf.toml"
    path.write_text(BASE + "[data]\ntrain_subset = 1437\ntest_subset = 360\n")
    _, jobs = load_jobs(path, registry)
    state = torch.random.get_rng_state()
    check_jobs(jobs, registry, data_dir)
    assert torch.equal(torch.random.get_rng_state(), state)  # the jobs' seeding is untouched


def test_subsets_larger_than_their_split(tmp_path: Path, registry, data_dir: Path) -> None:
    # digits: 1,797 images, 20 % held out for test → 1,437 train and 360 test
    text = BASE + "[data]\ntrain_subset = 1438\ntest_subset = 361\n"
    lines = check(tmp_path, text, registry, data_dir)
    assert lines == [
        "pf: data.train_subset — 1438 is more than the 1437 training samples of "
        "digits(normalize=half, test_fraction=0.2, split_seed=0)",
        "pf: data.test_subset — 361 is more than the 360 test samples of "
        "digits(normalize=half, test_fraction=0.2, split_seed=0)",
    ]


def test_models_that_cannot_take_the_input(tmp_path: Path, registry, data_dir: Path) -> None:
    text = BASE.replace('name = "lenet300"\nhidden = [8]', 'name = "lenet5"')
    (line,) = check(tmp_path, text, registry, data_dir)
    assert line.startswith("pf: model — lenet5(padding=0) on digits(") and "(1, 8, 8)" in line
    text = BASE.replace('name = "lenet300"\nhidden = [8]', 'name = "pf_fixed784"')
    (line,) = check(tmp_path, text, registry, data_dir)
    assert line.startswith("pf: model — pf_fixed784 on digits(")
    assert "cannot take inputs of shape (1, 8, 8)" in line
    text = BASE.replace('name = "lenet300"\nhidden = [8]', 'name = "pf_wrong_output"')
    (line,) = check(tmp_path, text, registry, data_dir)
    assert line.endswith(
        "gives output (1, 3) for one input of shape (1, 8, 8), not (1, 10) class scores"
    )


def test_bench_run_stops_before_any_job(tmp_path: Path, data_dir: Path) -> None:
    spec = tmp_path / "pf.toml"
    spec.write_text(BASE + "[data]\ntrain_subset = 100000\n")
    db = tmp_path / "bench.duckdb"
    result = CliRunner().invoke(
        app, ["run", str(spec), "--db", str(db), "--data-dir", str(data_dir)]
    )
    assert result.exit_code == 2, result.output
    assert (
        result.output.strip()
        .splitlines()[-1]
        .startswith("pf: data.train_subset — 100000 is more than the 1437 training samples")
    )
    assert "Traceback" not in result.output and "[job" not in result.output
