"""The per-job pipeline (runner) through the executor into the store: failures stay per job,
the stored metrics equal hand counts, the curves and provenance are filled, and a transform
is computed once per (dataset, transform options)."""

from __future__ import annotations

import json
import math
import socket
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
import torch
from pydantic import Field
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from benchharness import Data, Model, PluginOptions, Transform, datacache, hookimpl, metrics
from benchharness.executor import execute
from benchharness.matrix import Job, load_jobs
from benchharness.plugins import Registry, get_registry
from benchharness.progress import StudyProgress
from benchharness.store import Store

CPU = torch.device("cpu")

# digits (8×8 = 64 inputs, 10 classes) into a 64-16-10 MLP, two quick epochs
BASE = """
name = "{name}"

[dataset]
name = "digits"

[model]
name = "lenet300"
hidden = [16]
activation = "relu"

[optimizer]
name = "sgd"
lr = 0.1
epochs = 2
batch_size = 64

[measure]
latency_repeats = 2
latency_warmup = 1
"""

MLP_WEIGHTS = 64 * 16 + 16 * 10
MLP_BIASES = 16 + 10
MLP_PARAMS = MLP_WEIGHTS + MLP_BIASES


# ------------------------------------------------------------ throwaway plugins


class CountingTransform(Transform):
    """Scales the inputs and counts how often it is applied."""

    name = "counting"
    version = "7"
    calls: ClassVar[list[float]] = []

    class Options(PluginOptions):
        scale: float = Field(1.0, description="factor applied to every input value")

    def apply(self, data: Data) -> Data:
        CountingTransform.calls.append(self.options.scale)
        return data.replace(
            train_x=data.train_x * self.options.scale, test_x=data.test_x * self.options.scale
        )


class BoomModel(Model):
    """A model whose build fails, as a buggy third-party plugin would."""

    name = "boom"

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        raise RuntimeError("boom: this model refuses to build")


class _NaNNet(nn.Module):
    def __init__(self, inputs: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(inputs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1)) * float("nan")


class NaNModel(Model):
    """A model whose logits are NaN: training with the built-in sgd must diverge."""

    name = "nan_net"

    def build(self, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        return _NaNNet(math.prod(input_shape), num_classes)


class ThrowawayPlugins:
    @hookimpl
    def register_transforms(self, register):
        register(CountingTransform)

    @hookimpl
    def register_models(self, register):
        register(BoomModel)
        register(NaNModel)


@pytest.fixture
def registry() -> Registry:
    CountingTransform.calls.clear()
    datacache.clear()
    yield get_registry(extra_plugins=[ThrowawayPlugins()])
    datacache.clear()


def jobs_for(
    tmp_path: Path,
    registry: Registry,
    extra: str = "",
    *,
    name: str = "runner_test",
    overrides: tuple[str, ...] = (),
) -> list[Job]:
    spec = tmp_path / f"{name}.toml"
    spec.write_text(BASE.format(name=name) + extra)
    _spec, jobs = load_jobs(spec, registry, overrides=overrides)
    return jobs


def run_all(
    jobs: list[Job], registry: Registry, tmp_path: Path, data_dir: Path | None = None
) -> Store:
    store = Store(tmp_path / "bench.duckdb")
    records = execute(
        jobs,
        devices=[CPU],
        save=store.save,
        data_dir=data_dir or tmp_path / "data",
        cache_dir=tmp_path / "cache",
        registry=registry,
        progress=StudyProgress(len(jobs), 1, live=False, stream=open("/dev/null", "w")),
    )
    assert len(records) == len(jobs)
    return store


def row_of(store: Store, job: Job) -> dict:
    runs = store.runs()
    (row,) = runs[runs["job_id"] == job.id].to_dict("records")
    return row


# ------------------------------------------------------------------ failures


def test_failing_jobs_are_stored_and_the_study_goes_on(tmp_path: Path, registry: Registry) -> None:
    jobs = jobs_for(
        tmp_path,
        registry,
        """
[matrix]
"model" = [{ name = "lenet300", hidden = [16], activation = "relu" }, { name = "nan_net" },
           { name = "boom" }]
""",
    )
    assert len(jobs) == 3
    store = run_all(jobs, registry, tmp_path)
    good, nan, boom = (row_of(store, job) for job in jobs)

    assert good["status"] == "completed" and pd.isna(good["error"])
    assert good["test_accuracy"] > 0.5

    assert nan["status"] == "failed"
    assert nan["error"].startswith("diverged: ")
    assert "not finite" in nan["error"]
    assert pd.isna(nan["test_accuracy"])

    assert boom["status"] == "failed"
    assert boom["error"] == "RuntimeError: boom: this model refuses to build"
    trace = json.loads(boom["extra"])["traceback"]
    assert trace.startswith("Traceback (most recent call last)")
    assert "refuses to build" in trace and "test_runner.py" in trace
    # provenance is still recorded for a failed job
    assert boom["torch_version"] == torch.__version__
    assert boom["started_at"] <= boom["finished_at"]

    # a failed record never replaces a completed one; the completed one stays
    assert set(store.completed_ids([j.id for j in jobs])) == {jobs[0].id}


# ------------------------------------------------------------------- metrics


def test_metrics_of_a_dense_job(tmp_path: Path, registry: Registry) -> None:
    (job,) = jobs_for(tmp_path, registry)
    store = run_all([job], registry, tmp_path)
    row = row_of(store, job)
    assert row["status"] == "completed"

    assert row["params"] == MLP_PARAMS == 64 * 16 + 16 + 16 * 10 + 10
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, 8, 8))
    assert row["flops"] == counter.get_total_flops() == 2 * MLP_WEIGHTS > 0
    assert row["flops_effective"] == row["flops"]
    assert row["size_bits"] == 32 * MLP_PARAMS
    assert row["compression_ratio"] == 1.0
    assert pd.isna(row["compression_realised"])
    assert row["input_values"] == 64
    assert row["input_ratio"] == 1.0
    assert 0.5 < row["test_accuracy"] <= 1.0
    assert row["test_loss"] > 0
    assert row["train_seconds"] > 0
    # the [measure] default (128), not the optimizer's batch size (64)
    assert row["latency_b1_median_ms"] > 0 and row["latency_batch_size"] == 128
    assert row["transform_flops"] == 0 and row["flops_total"] == row["flops_effective"]
    assert row["torch_threads"] == torch.get_num_threads()

    # curves: one row per epoch and metric; the last test accuracy is the final one
    curves = store.curves(job.id)
    assert len(curves) == 2 * 4
    assert set(curves["phase"]) == {"train"}
    assert set(curves["name"]) == {"train_loss", "test_loss", "test_accuracy", "lr"}
    assert sorted(curves.groupby("name")["step"].apply(list).to_dict().items()) == [
        (name, [1, 2]) for name in ("lr", "test_accuracy", "test_loss", "train_loss")
    ]
    last = curves[(curves["name"] == "test_accuracy") & (curves["step"] == 2)]["value"]
    assert float(last.iloc[0]) == pytest.approx(row["test_accuracy"])
    lrs = curves[curves["name"] == "lr"].sort_values("step")["value"].tolist()
    assert lrs == pytest.approx([0.1, 0.05])  # cosine from 0.1 towards 0 over 2 epochs

    # provenance
    assert row["torch_version"] == torch.__version__
    assert row["device"] == "cpu"
    assert row["hostname"] == socket.gethostname()
    assert row["package_version"]
    assert row["cpu"]
    assert row["started_at"] <= row["finished_at"]
    assert json.loads(row["plugin_versions"]) == {
        "dataset:digits": "1",
        "model:lenet300": "1",
        "optimizer:sgd": "1",
    }
    extra = json.loads(row["extra"])
    assert "act.fc1.mean" in extra and "traceback" not in extra


def test_metrics_with_a_quantizer(
    tmp_path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    evaluated: list[dict[str, torch.Tensor]] = []
    real_evaluate = metrics.evaluate

    def spy(model, *args, **kwargs):
        evaluated.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(metrics, "evaluate", spy)
    (job,) = jobs_for(
        tmp_path,
        registry,
        """
[compressor]
name = "quantize"
k = 2
""",
    )
    store = run_all([job], registry, tmp_path)
    row = row_of(store, job)
    assert row["status"] == "completed", row["error"]

    k = 2
    per_layer = [(64 * 16, 16), (16 * 10, 10)]  # (weights, biases)
    bits = sum(math.ceil(math.log2(k)) * w + 32 * k + 32 * b for w, b in per_layer)
    assert bits == 1 * MLP_WEIGHTS + 2 * 32 * k + 32 * MLP_BIASES
    assert row["params"] == MLP_PARAMS
    assert row["size_bits"] == bits
    assert row["compression_ratio"] == pytest.approx(32 * MLP_PARAMS / bits)
    assert bool(row["compression_realised"]) is True
    assert row["flops_effective"] == row["flops"] == 2 * MLP_WEIGHTS

    # the final evaluation (after the training epochs' ones) sees the quantised weights
    final = evaluated[-1]
    assert len(evaluated) == 2 + 1 + 1  # epochs, the dense model before compression, final
    for name in ("fc1.weight", "fc2.weight"):
        assert final[name].unique().numel() <= k
    for name in ("fc1.bias", "fc2.bias"):  # biases stay 32-bit floats
        assert final[name].unique().numel() > k
    assert evaluated[-2]["fc1.weight"].unique().numel() > k  # trained weights were dense
    assert row["dense_test_accuracy"] == pytest.approx(
        real_evaluate(
            _dense_twin(evaluated[-2]), *_digits_test(job, registry, tmp_path), 1000
        ).accuracy
    )
    assert json.loads(row["plugin_versions"])["compressor:quantize"] == "1"


def _dense_twin(params: dict[str, torch.Tensor]) -> nn.Module:
    """The 64-16-10 MLP holding ``params`` (as the lenet300 plugin names them)."""
    model = (
        get_registry()
        .from_table("model", {"name": "lenet300", "hidden": [16], "activation": "relu"})
        .build((1, 8, 8), 10)
    )
    model.load_state_dict(params, strict=False)
    return model


def _digits_test(job, registry, tmp_path):
    data = datacache.load(job.config, registry, tmp_path / "data")[1]
    return data.test_x, data.test_y


@pytest.mark.parametrize(
    ("selection", "stored_bits"),
    [
        # 16 values of 32 bits, plus which 16 of 64: min(16 · ⌈log2 64⌉ = 96, 64-bit mask)
        ("magnitude", 16 * 32 + 64),
        ("lowfreq", 16 * 32),  # the same zig-zag prefix for every image: no positions
    ],
)
def test_input_metrics_with_the_dct_transform(
    tmp_path: Path, registry: Registry, selection: str, stored_bits: int
) -> None:
    (job,) = jobs_for(
        tmp_path,
        registry,
        f"""
[transform]
name = "dct"
ratio = 0.25
selection = "{selection}"
""",
    )
    store = run_all([job], registry, tmp_path)
    row = row_of(store, job)
    assert row["status"] == "completed", row["error"]
    assert row["input_values"] == 16  # floor(0.25 · 8 · 8) coefficients per image
    assert row["input_ratio"] == 64 * 32 / stored_bits  # raw: 64 32-bit floats
    assert row["params"] == MLP_PARAMS  # reconstruction output: the same 8×8 input shape
    # forward D @ x @ Dᵀ: 8·8·8 + 8·8·8 MACs, the inverse as many; 2 FLOPs per MAC
    assert row["transform_flops"] == 2 * 2 * (8 * 8 * 8 + 8 * 8 * 8) == 4096
    assert row["flops_effective"] == row["flops"] == 2 * MLP_WEIGHTS
    assert row["flops_total"] == row["flops_effective"] + row["transform_flops"]
    assert json.loads(row["plugin_versions"])["transform:dct"] == "3"


# ----------------------------------------------------------------- transforms


def test_transform_is_computed_once_per_dataset_and_options(
    tmp_path: Path, registry: Registry
) -> None:
    quick = ("optimizer.epochs=1", "measure.latency=false", "measure.activation_stats=false")
    jobs = jobs_for(
        tmp_path,
        registry,
        """
[transform]
name = "counting"

[matrix]
"optimizer.lr" = [0.05, 0.1]
""",
        overrides=quick,
    )
    assert len(jobs) == 2
    store = run_all(jobs, registry, tmp_path)
    assert CountingTransform.calls == [1.0]
    runs = store.runs()
    assert set(runs["status"]) == {"completed"}
    assert {json.loads(v)["transform:counting"] for v in runs["plugin_versions"]} == {"7"}

    # different transform options: computed once more each, the rest from the cache
    CountingTransform.calls.clear()
    jobs = jobs_for(
        tmp_path,
        registry,
        """
[transform]
name = "counting"

[matrix]
"optimizer.lr" = [0.05, 0.1]
"transform.scale" = [1.0, 2.0]
""",
        name="runner_test_2",
        overrides=quick,
    )
    assert len(jobs) == 4
    run_all(jobs, registry, tmp_path)
    assert sorted(CountingTransform.calls) == [2.0]  # scale 1.0 was cached by the first study
