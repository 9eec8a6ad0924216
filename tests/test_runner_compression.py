"""The post-training compression stage and the train-once cache, through the real executor
and store: a data-aware compressor gets training data, MACs and a seeded generator; its
metrics are stored; a bad return fails only its job; jobs that differ only in compressor
settings train once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from pydantic import Field
from test_runner import jobs_for, row_of, run_all

from benchharness import (
    Compressed,
    CompressionContext,
    Compressor,
    CompressorOptions,
    datacache,
    hookimpl,
)
from benchharness.coding import FLOAT_BITS, LayerwiseWeights
from benchharness.plugins import Registry, get_registry
from benchharness_plugins.optimizers import SGD


class _Scaled:
    """One layer of Θ: the weight times a stored scalar (the values stay 32-bit)."""

    def __init__(self, weight: torch.Tensor, scale: float):
        self.weight, self.scale = weight, scale

    def dense(self) -> torch.Tensor:
        return self.weight * self.scale

    def bits(self) -> int:
        return FLOAT_BITS * (self.weight.numel() + 1)

    def macs(self, dense_macs: int) -> int:
        return dense_macs


class Probe(Compressor):
    """Scales the weights; records what its compression context offered."""

    name = "probe"
    version = "3"
    data_aware = True
    seen: ClassVar[list[dict]] = []

    class Options(CompressorOptions):
        scale: float = Field(0.5, description="factor applied to the weights")
        seed: int = Field(0, description="the compressor's own seed (changes its generator)")

    def compress_model(self, ctx: CompressionContext) -> Compressed:
        batches = ctx.calibration_batches(50, batch_size=16)
        Probe.seen.append(
            {
                "x": torch.cat([x for x, _ in batches]),
                "macs": dict(ctx.layer_macs),
                "draw": float(torch.rand(1, generator=ctx.generator)),
                "loss": ctx.loss(ctx.model, batches),
            }
        )
        ctx.report(scale=self.options.scale)
        selected = self.select(ctx.model)
        return LayerwiseWeights(
            {n: _Scaled(w.detach().clone(), self.options.scale) for n, w in selected.items()}
        )


class _WrongShape(Compressed):
    realised = True

    def decompress(self):
        return {"fc1.weight": torch.zeros(3, 3)}

    def bits(self):
        return 9


class Broken(Compressor):
    """Returns a Θ of the wrong shape."""

    name = "broken"
    data_aware = True

    def compress_model(self, ctx: CompressionContext) -> Compressed:
        return _WrongShape()


class CountingSGD(SGD):
    """sgd that counts its trainings."""

    name = "counting_sgd"
    calls: ClassVar[list[int]] = []

    def train(self, model, ctx):
        CountingSGD.calls.append(ctx.seed)
        return super().train(model, ctx)


class Plugins:
    @hookimpl
    def register_compressors(self, register):
        register(Probe)
        register(Broken)

    @hookimpl
    def register_optimizers(self, register):
        register(CountingSGD)


@pytest.fixture
def registry() -> Registry:
    Probe.seen.clear()
    CountingSGD.calls.clear()
    datacache.clear()
    yield get_registry(extra_plugins=[Plugins()])
    datacache.clear()


COUNTING = ('optimizer.name="counting_sgd"',)  # the base spec's sgd, counted


def test_a_data_aware_compressor_gets_training_data_macs_and_its_metrics_are_stored(
    tmp_path: Path, registry: Registry, data_dir: Path
) -> None:
    (job,) = jobs_for(tmp_path, registry, '\n[compressor]\nname = "probe"\nscale = 0.5\n')
    store = run_all([job], registry, tmp_path)
    row = row_of(store, job)
    assert row["status"] == "completed", row["error"]

    (seen,) = Probe.seen
    data = datacache.load(job.config, registry, tmp_path / "data")[1]
    train_rows = {tuple(r.reshape(-1).tolist()) for r in data.train_x}
    assert all(tuple(r.reshape(-1).tolist()) in train_rows for r in seen["x"])
    assert seen["x"].shape[0] == 50
    assert seen["macs"] == {"fc1.weight": 64 * 16, "fc2.weight": 16 * 10}
    assert seen["loss"] > 0

    extra = json.loads(row["extra"])
    assert extra["probe.scale"] == 0.5
    assert row["compress_seconds"] >= 0
    # Θ: every weight 32-bit plus one scale per layer; biases 32-bit
    assert row["size_bits"] == 32 * (64 * 16 + 16 * 10 + 2) + 32 * (16 + 10)
    assert row["compression_realised"]


def test_compressor_metrics_are_reportable(tmp_path: Path, registry: Registry) -> None:
    from benchharness import report

    jobs = jobs_for(
        tmp_path,
        registry,
        '\n[compressor]\nname = "probe"\n[matrix]\n"compressor.scale" = [0.5, 1.0]\n',
    )
    store = run_all(jobs, registry, tmp_path)
    df = report.summarize(store, objectives="accuracy:max,probe.scale:min")
    assert sorted(df["probe.scale_mean"].tolist()) == [0.5, 1.0]


def test_a_bad_return_fails_its_job_with_one_line(tmp_path: Path, registry: Registry) -> None:
    (job,) = jobs_for(tmp_path, registry, '\n[compressor]\nname = "broken"\n')
    row = row_of(run_all([job], registry, tmp_path), job)
    assert row["status"] == "failed"
    assert row["error"] == (
        "compressor broken: Δ(Θ)['fc1.weight'] has shape (3, 3), the weight has (16, 64)"
    )


def test_a_data_aware_compressor_cannot_be_an_lc_c_step(tmp_path: Path, registry: Registry):
    extra = """
[compressor]
name = "probe"
[matrix]
optimizer = [{ name = "dc", reference = { name = "sgd", epochs = 1 } }]
"""
    (job,) = jobs_for(tmp_path, registry, extra)
    row = row_of(run_all([job], registry, tmp_path), job)
    assert row["status"] == "failed"
    assert "compressor probe is data-aware" in row["error"] and "\n" not in row["error"]


# ---------------------------------------------------------------- train once
def test_jobs_differing_only_in_compressor_settings_train_once(
    tmp_path: Path, registry: Registry
) -> None:
    extra = '\n[compressor]\nname = "probe"\n[matrix]\n"compressor.scale" = [0.25, 0.5, 1.0]\n'
    jobs = jobs_for(tmp_path, registry, extra, overrides=COUNTING)
    store = run_all(jobs, registry, tmp_path)
    rows = [row_of(store, job) for job in jobs]
    assert CountingSGD.calls == [0]
    assert [r["train_reused"] for r in rows] == [False, True, True]
    assert len({r["train_seconds"] for r in rows}) == 1  # the training's own time, for all
    curves = [store.curves(job.id) for job in jobs]
    train = [c[c["phase"] == "train"].reset_index(drop=True) for c in curves]
    assert len(train[0]) == 8 and all(t.equals(train[0]) for t in train)
    # the compressed models differ: each job compressed the shared trained weights itself
    assert len({r["test_loss"] for r in rows}) == 3
    # before compression every job evaluated the same trained model
    assert len({r["dense_test_accuracy"] for r in rows}) == 1
    assert rows[2]["dense_test_accuracy"] == rows[2]["test_accuracy"]  # scale 1: unchanged

    # another study with the same training (another spec name) reuses it too
    more = jobs_for(
        tmp_path, registry, extra.replace("0.25, ", ""), name="other_study", overrides=COUNTING
    )
    run_all(more, registry, tmp_path)
    assert CountingSGD.calls == [0]


def test_a_compressor_seed_changes_the_draw_and_a_rerun_repeats_it(
    tmp_path: Path, registry: Registry
) -> None:
    extra = '\n[compressor]\nname = "probe"\n[matrix]\n"compressor.seed" = [0, 1]\n'
    jobs = jobs_for(tmp_path, registry, extra, overrides=COUNTING)
    run_all(jobs, registry, tmp_path)
    first = [s["draw"] for s in Probe.seen]
    Probe.seen.clear()
    run_all(
        jobs_for(tmp_path, registry, extra, name="again", overrides=COUNTING), registry, tmp_path
    )
    assert first[0] != first[1]
    assert [s["draw"] for s in Probe.seen] == first
    assert CountingSGD.calls == [0]


def test_a_corrupt_cache_entry_is_discarded_and_trained_again(
    tmp_path: Path, registry: Registry
) -> None:
    extra = '\n[compressor]\nname = "probe"\n'
    (job,) = jobs_for(tmp_path, registry, extra, overrides=COUNTING)
    run_all([job], registry, tmp_path)
    (entry,) = (tmp_path / "cache").glob("trained-*.pt")
    entry.write_bytes(entry.read_bytes()[:100])  # truncated, as by a full disk

    (again,) = jobs_for(tmp_path, registry, extra, name="after_corruption", overrides=COUNTING)
    row = row_of(run_all([again], registry, tmp_path), again)
    assert row["status"] == "completed" and not row["train_reused"]
    assert CountingSGD.calls == [0, 0]
    torch.load(entry, weights_only=True)  # rewritten whole


def test_schemes_that_compress_while_training_are_not_shared(
    tmp_path: Path, registry: Registry
) -> None:
    extra = """
[compressor]
name = "quantize"
[matrix]
optimizer = [{ name = "dc", reference = { name = "counting_sgd", epochs = 1 } }]
"compressor.k" = [2, 4]
"""
    jobs = jobs_for(tmp_path, registry, extra)
    store = run_all(jobs, registry, tmp_path)
    rows = [row_of(store, job) for job in jobs]
    assert [r["train_reused"] for r in rows] == [False, False]
    assert CountingSGD.calls == [0]  # the shared reference is trained once
    assert all(json.loads(r["extra"])["reference_seconds"] > 0 for r in rows)
    assert not list((tmp_path / "cache").glob("trained-*.pt"))


def test_everything_that_determines_a_trained_model_changes_its_cache_key(
    tmp_path: Path, registry: Registry
) -> None:
    """One key per training: any change of data, transform, model, optimizer, seed or a
    plugin version is a new key; compressor settings are not part of it."""
    from benchharness import trained_cache
    from benchharness.jobcontext import training_inputs

    def key(extra: str = "", overrides: tuple[str, ...] = (), name: str = "k") -> str:
        (job,) = jobs_for(tmp_path, registry, extra, name=name, overrides=overrides)
        return trained_cache.cache_key("trained", training_inputs(job, registry))

    base = key()
    variants = {
        "data": key("\n[data]\ntrain_subset = 500\n"),
        "transform": key('\n[transform]\nname = "dct"\nratio = 0.5\n'),
        "model": key(overrides=("model.hidden=[17]",)),
        "optimizer": key(overrides=("optimizer.lr=0.2",)),
        "seed": key(overrides=("matrix.seeds=[1]",)),
        "dataset": key(overrides=("dataset.normalize='none'",)),
    }
    assert len({base, *variants.values()}) == 1 + len(variants), variants
    assert key('\n[compressor]\nname = "probe"\nscale = 0.1\n') == base
    assert key(name="another_spec") == base  # the spec's name does not change the training

    (job,) = jobs_for(tmp_path, registry)
    bumped = get_registry(extra_plugins=[Plugins()])
    bumped.by_kind["optimizer"]["sgd"] = dataclasses.replace(
        bumped.by_kind["optimizer"]["sgd"], cls=type("SGD2", (SGD,), {"version": "2"})
    )
    assert trained_cache.cache_key("trained", training_inputs(job, bumped)) != base
