"""A group that cannot fuse trains each job alone, each from the random state its own
preparation left: a model that draws from the global generator while training (dropout)
gets exactly the results it gets with grouping off."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import benchharness.plugins
from benchharness import Model, grouped_runner, hookimpl
from benchharness.cli import app
from benchharness.store import Store

SPEC = """
name = "dropout_group"

[dataset]
name = "digits"

[model]
name = "dropout_mlp"

[optimizer]
name = "sgd"
lr = 0.1
epochs = 2
batch_size = 64

[measure]
latency = false
activation_stats = false
flops = false

[matrix]
seeds = [0, 1, 2]
"""


class _DropoutMLP(Model):
    """Flatten → Linear → ReLU → Dropout(0.5) → Linear: training draws dropout masks
    from torch's global generator, so its results depend on the global random state."""

    name = "dropout_mlp"

    def build(self, input_shape, num_classes):
        from torch import nn

        features = 1
        for size in input_shape:
            features *= size
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(features, 32),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(32, num_classes),
        )


class _Models:
    @hookimpl
    def register_models(self, register):
        register(_DropoutMLP)


@pytest.fixture
def dropout_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = benchharness.plugins.get_registry(extra_plugins=[_Models()])
    monkeypatch.setattr(benchharness.plugins, "get_registry", lambda *a, **k: registry)


@pytest.fixture
def not_fused_reasons(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The reason each group the executor formed was not fused (recorded, not changed)."""
    reasons: list[str | None] = []
    original = grouped_runner._why_not_fused

    def record(runs):
        reason = original(runs)
        reasons.append(reason)
        return reason

    monkeypatch.setattr(grouped_runner, "_why_not_fused", record)
    return reasons


def _results(db: Path) -> dict[str, tuple]:
    runs = Store(db).runs("dropout_group")
    return {
        r["job_id"]: (r["status"], r["test_accuracy"], r["test_loss"])
        for r in runs.to_dict("records")
    }


def test_an_unfusible_group_gives_each_job_its_own_random_state(
    tmp_path: Path, dropout_registry, not_fused_reasons
) -> None:
    spec = tmp_path / "dropout_group.toml"
    spec.write_text(SPEC)
    grouped, alone = tmp_path / "grouped.duckdb", tmp_path / "alone.duckdb"
    for db, options in ((grouped, []), (alone, ["--no-group"])):
        result = CliRunner().invoke(
            app, ["run", str(spec), "--db", str(db), "--devices", "cpu", *options]
        )
        assert result.exit_code == 0, result.output
    # the three seeds formed one group, which could not fuse because of the dropout
    assert len(not_fused_reasons) == 1 and "Dropout" in (not_fused_reasons[0] or "")
    a, b = _results(grouped), _results(alone)
    assert len(a) == 3 and sorted(a) == sorted(b)
    assert {status for status, *_ in a.values()} == {"completed"}
    for job_id, values in a.items():
        assert values == b[job_id], job_id  # bit-identical, dropout masks included
    # the seeds' dropout masks differ, so the check above could tell them apart
    assert len({values[2] for values in a.values()}) == 3
