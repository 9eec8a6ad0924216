"""[compute] precision: autocast training and evaluation per job, stored as runs.precision."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from benchharness import Data
from benchharness.cli import app
from benchharness.matrix import load_jobs
from benchharness.migrations import MIGRATIONS
from benchharness.plugins import get_registry
from benchharness.store import Store
from benchharness.training import train_epochs
from tests.fakes import FakeContext

SPECS = Path(__file__).parent / "specs"
DIGITS = (SPECS / "cli_digits.toml").read_text()

TINY = """
name = "precision"

[dataset]
name = "digits"

[model]
name = "lenet300"
hidden = [32]

[optimizer]
name = "sgd"
lr = 0.1
epochs = 2
batch_size = 64

[measure]
latency = false
activation_stats = false
flops = false
"""


def bench(*args) -> object:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("bench crashed") from result.exception
    return result


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_fp32_by_default_or_written_keeps_every_job_id(tmp_path):
    registry = get_registry()
    plain = write(tmp_path, DIGITS, "plain.toml")
    written = write(tmp_path, DIGITS + '\n[compute]\nprecision = "fp32"\n', "fp32.toml")
    _, before = load_jobs(plain, registry)
    _, after = load_jobs(written, registry)
    assert [j.id for j in after] == [j.id for j in before]
    assert all("compute" not in j.config for j in after)
    # the id the same spec had before [compute] existed (tests/test_cli.py's study)
    assert before[0].id == "1bda9065f5db90da"


def test_precision_axis_makes_distinct_jobs(tmp_path):
    spec = write(tmp_path, TINY + '\n[matrix]\n"compute.precision" = ["fp32", "bf16"]\n')
    _, jobs = load_jobs(spec, get_registry())
    assert [j.axes["compute.precision"] for j in jobs] == ["fp32", "bf16"]
    assert "compute" not in jobs[0].config
    assert jobs[1].config["compute"] == {"precision": "bf16"}


@pytest.mark.parametrize("value", ['"fp8"', "16"])
def test_an_invalid_precision_is_one_line_naming_the_key(tmp_path, value):
    spec = write(tmp_path, TINY + f"\n[compute]\nprecision = {value}\n")
    result = bench("validate", spec)
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith(f"{spec}: compute.precision — ")
    assert "'fp32', 'bf16' or 'fp16'" in lines[0]


def test_reduced_precision_runs_train_and_are_stored_with_their_precision(tmp_path):
    spec = write(tmp_path, TINY + '\n[matrix]\n"compute.precision" = ["fp32", "bf16", "fp16"]\n')
    db = tmp_path / "bench.duckdb"
    result = bench("run", spec, "--db", db, "--devices", "cpu")
    assert result.exit_code == 0, result.output
    runs = Store(db).runs("precision").set_index("precision")
    assert sorted(runs.index) == ["bf16", "fp16", "fp32"]
    assert (runs["status"] == "completed").all()
    # each trains (a stale autocast weight cache would leave the model at chance, ~10%)
    assert (runs["test_accuracy"] > 0.8).all()
    # ... in its own arithmetic: reduced precision changes the losses a little
    fp32_loss = runs.loc["fp32", "test_loss"]
    for low in ("bf16", "fp16"):
        assert runs.loc[low, "test_loss"] != fp32_loss
        assert runs.loc[low, "test_loss"] == pytest.approx(fp32_loss, rel=0.1)


def _digits(n: int = 256) -> Data:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(n, 1, 8, 8, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    return Data(train_x=x, train_y=y, test_x=x[:64], test_y=y[:64], num_classes=2)


def test_train_epochs_in_bf16_is_a_plain_autocast_loop():
    """train_epochs with ctx.precision = bf16 equals a hand-written bf16 autocast loop."""
    data = _digits()

    def net() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))

    ctx = FakeContext(data, seed=5)
    ctx.precision = "bf16"
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train_epochs(model, ctx, opt, epochs=2, batch_size=32, lr_for_epoch=lambda e: 0.05)

    reference = net()
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(5)
    for _ in range(2):
        order = torch.randperm(data.train_x.shape[0], generator=generator)
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = reference(data.train_x[idx])
            loss = F.cross_entropy(out.float(), data.train_y[idx])
            ref_opt.zero_grad()
            loss.backward()
            ref_opt.step()
    for ours, theirs in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(ours, theirs)
    fp32 = net()
    fp32_opt = torch.optim.SGD(fp32.parameters(), lr=0.05, momentum=0.9)
    train_epochs(
        fp32,
        FakeContext(data, seed=5),
        fp32_opt,
        epochs=2,
        batch_size=32,
        lr_for_epoch=lambda e: 0.05,
    )
    assert not torch.equal(fp32[1].weight, model[1].weight)  # autocast did act


def test_m005_marks_earlier_runs_fp32(tmp_path):
    """A database written before m005_precision: its runs trained in fp32, and say so."""
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)")
    for name, migration in MIGRATIONS:
        if name == "m005_precision":
            break
        migration(con)
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [name])
    con.execute(
        "INSERT INTO runs (job_id, config_id, spec_name, quick, status, config) "
        "VALUES ('a', 'c', 's', false, 'completed', ?)",
        [json.dumps({"model": {"name": "m"}})],
    )
    con.close()
    runs = Store(db).runs("s")
    assert list(runs["precision"]) == ["fp32"]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_precision_survives_export_and_import(tmp_path, fmt):
    from benchharness.exchange import export, import_paths
    from tests.test_store import make_record

    source = Store(tmp_path / "source.duckdb")
    bf16 = {"model": {"name": "mlp"}, "compute": {"precision": "bf16"}}
    source.save(make_record("low", config=bf16))
    source.save(make_record("plain"))
    export(source, tmp_path / "export", fmt)
    target = Store(tmp_path / "target.duckdb")
    report = import_paths(target, [tmp_path / "export"])
    assert report.imported == 2
    runs = target.runs("spec-a").set_index("job_id")
    assert runs.loc["low", "precision"] == "bf16"
    assert runs.loc["plain", "precision"] == "fp32"
