"""The fused engine's parts: FusedSGD against torch.optim.SGD, the fusibility check,
precision, the fuse/no-fuse probe and the grouping of a study's jobs."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from benchharness.errors import BenchError
from benchharness.grouped import (
    FusedSGD,
    MemberRun,
    autocast_dtype,
    check_fusible,
    fuse,
    fusible_reason,
    train_fused,
    unfuse,
)
from benchharness.grouped.grouping import MAX_MEMBERS, group_jobs, group_key, training_key
from benchharness.grouped.probe import clear_decisions, decide
from benchharness.matrix import load_jobs
from benchharness.plugins import get_registry
from benchharness_plugins.models import CompressedNet, LeNet5, LeNet300Model

REPO = Path(__file__).resolve().parents[1]


def _net(width: float = 0.25, seed: int = 0, hidden: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return CompressedNet(CompressedNet.Options(width=width, hidden=hidden)).build((1, 28, 28), 10)


def _mlp(hidden: list[int], seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return LeNet300Model(LeNet300Model.Options(hidden=hidden)).build((1, 28, 28), 10)


# ---------------------------------------------------------------------- FusedSGD
def test_fused_sgd_is_torch_sgd_per_member():
    """Three members, each with its own lr, momentum, weight decay and Nesterov flag,
    against torch.optim.SGD on a separate copy, over steps with changing gradients and
    a learning-rate change."""
    settings = [
        dict(lr=0.1, momentum=0.9, weight_decay=0.0, nesterov=False),
        dict(lr=0.05, momentum=0.5, weight_decay=1e-2, nesterov=True),
        dict(lr=0.2, momentum=0.0, weight_decay=1e-3, nesterov=False),
    ]
    gen = torch.Generator().manual_seed(0)
    conv = torch.randn(3 * 4, 2, 3, 3, generator=gen)  # grouped-conv layout: 4 rows each
    linear = torch.randn(3, 5, 7, generator=gen)  # batched-matmul layout
    fused = [nn.Parameter(conv.clone()), nn.Parameter(linear.clone())]
    alone = [[nn.Parameter(conv[4 * i : 4 * i + 4].clone()), nn.Parameter(linear[i].clone())]
             for i in range(3)]  # fmt: skip
    opt = FusedSGD(fused, 3, **{k: [s[k] for s in settings] for k in settings[0]})
    refs = [torch.optim.SGD(p, **s) for p, s in zip(alone, settings, strict=True)]
    for step in range(4):
        if step == 2:
            opt.set_lrs([0.01, 0.02, 0.03])
            for ref, lr in zip(refs, [0.01, 0.02, 0.03], strict=True):
                ref.param_groups[0]["lr"] = lr
        grads = [torch.randn(p.shape, generator=gen) for p in fused]
        fused[0].grad, fused[1].grad = grads[0].clone(), grads[1].clone()
        for i, params in enumerate(alone):
            params[0].grad = grads[0][4 * i : 4 * i + 4].clone()
            params[1].grad = grads[1][i].clone()
        opt.step()
        for ref in refs:
            ref.step()
        for i, params in enumerate(alone):
            torch.testing.assert_close(fused[0].data[4 * i : 4 * i + 4], params[0].data)
            torch.testing.assert_close(fused[1].data[i], params[1].data)


def test_fused_sgd_rejects_inconsistent_settings():
    p = [nn.Parameter(torch.zeros(4, 3))]
    with pytest.raises(ValueError, match="2 values for 3 members"):
        FusedSGD(p, 3, lr=[0.1, 0.1], momentum=[0] * 3, weight_decay=[0] * 3, nesterov=[0] * 3)
    with pytest.raises(ValueError, match="nesterov needs momentum"):
        FusedSGD(p, 2, lr=[0.1] * 2, momentum=[0, 0.9], weight_decay=[0] * 2, nesterov=[1, 0])
    with pytest.raises(ValueError, match="not 3 stacked"):
        FusedSGD(p, 3, lr=[0.1] * 3, momentum=[0] * 3, weight_decay=[0] * 3, nesterov=[0] * 3)


# ------------------------------------------------------------------- fusibility
def test_models_of_one_architecture_are_fusible():
    assert fusible_reason([_net(seed=s) for s in range(3)]) is None
    assert fusible_reason([_mlp([32, 16], seed=s) for s in range(2)]) is None
    lenet5 = LeNet5().build((1, 28, 28), 10)
    assert fusible_reason([lenet5, copy.deepcopy(lenet5)]) is None


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        (lambda: [_net(0.25), _net(0.5)], "model 1 differs from model 0"),
        (lambda: [_net(hidden=16), _net(hidden=8)], "fc1"),
        (lambda: [_mlp([32, 16]), _mlp([32, 8])], "model 1 differs"),
        (lambda: [_mlp([32]), _mlp([32, 16])], "different number of layers"),
        (lambda: [_net(), _mlp([32])], "is a LeNet300, model 0 a ConvNet"),
        (lambda: [nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))] * 2, "BatchNorm1d"),
        (lambda: [nn.Sequential(nn.Linear(4, 4), nn.Dropout())] * 2, "Dropout"),
        (lambda: [], "no models"),
        (lambda: [nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(4, 4))] * 2, "before the flatten"),
        (lambda: [nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.MaxPool2d(2))] * 2, "after"),
    ],
)
def test_fusibility_rejects_different_shapes_and_unsupported_layers(models, expected):
    group = models()
    reason = fusible_reason(group)
    assert reason is not None and expected in reason
    with pytest.raises(BenchError, match="cannot fuse"):
        check_fusible(group)
    with pytest.raises(BenchError):
        fuse(group)


def test_a_residual_connection_is_not_a_chain():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return x + self.fc(x)

    reason = fusible_reason([Residual(), Residual()])
    assert reason is not None and "chain" in reason


# -------------------------------------------------------------------- precision
def test_precision_names():
    assert autocast_dtype("fp32") is None
    assert autocast_dtype("bf16") is torch.bfloat16
    assert autocast_dtype("fp16") is torch.float16
    with pytest.raises(BenchError, match="fp32, bf16, fp16"):
        autocast_dtype("fp8")


def _synthetic(n: int = 96, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=gen), torch.randint(0, 10, (n,), generator=gen)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_low_precision_fused_training_follows_the_fp32_run(precision):
    """Autocast runs train every member; one epoch ends close to the fp32 result
    (bf16 keeps 8 mantissa bits, so only loosely), and parameters stay float32."""
    x, y = _synthetic()
    models = [_net(seed=s) for s in range(2)]
    results = {}
    for mode in ("fp32", precision):
        fused = fuse(models)
        runs = [MemberRun(x, y, torch.Generator().manual_seed(s), lambda e: 0.05, momentum=0.9)
                for s in range(2)]  # fmt: skip
        losses, diverged = train_fused(fused, runs, epochs=1, batch_size=32, precision=mode)
        assert diverged == [None, None]
        assert all(p.dtype == torch.float32 for p in fused.parameters())
        results[mode] = (losses, unfuse(fused))
    for low, full in zip(results[precision][0], results["fp32"][0], strict=True):
        assert low[0] == pytest.approx(full[0], rel=2e-2)
    for low, full in zip(results[precision][1], results["fp32"][1], strict=True):
        for a, b in zip(low.parameters(), full.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=2e-2)


# ------------------------------------------------------------------------ probe
def test_the_probe_is_skipped_when_turned_off_or_pointless():
    x, y = _synthetic(16)
    models = [_net(seed=s) for s in range(2)]
    off = decide(models, x, y, batch_size=8, enabled=False)
    assert not off.fuse and off.ratio is None and "off" in off.reason
    single = decide(models[:1], x, y, batch_size=8)
    assert not single.fuse and single.ratio is None
    unfusible = decide([_net(0.25), _net(0.5)], x, y, batch_size=8)
    assert not unfusible.fuse and "differs" in unfusible.reason


def test_the_probe_decides_by_the_measured_ratio_and_leaves_rngs_alone():
    x, y = _synthetic(16)
    models = [_net(seed=s) for s in range(2)]
    before = [p.detach().clone() for m in models for p in m.parameters()]
    rng = torch.get_rng_state()
    clear_decisions()
    always = decide(models, x, y, batch_size=8, min_ratio=0.0, steps=1, repeats=1)
    assert always.fuse and always.ratio > 0
    assert always.ratio == pytest.approx(always.sequential_seconds / always.fused_seconds)
    assert decide(models, x, y, batch_size=8, min_ratio=0.0) is always  # cached
    never = decide(models, x, y, batch_size=8, min_ratio=float("inf"), steps=1, repeats=1)
    assert not never.fuse and never.ratio is not None and "not" in never.reason
    clear_decisions()
    assert torch.equal(torch.get_rng_state(), rng)
    after = [p.detach() for m in models for p in m.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))


# --------------------------------------------------------------------- grouping
@pytest.fixture(scope="module")
def study_jobs():
    _spec, jobs = load_jobs(REPO / "specs" / "mnist_width_dct.toml", get_registry())
    return jobs


def test_a_study_is_grouped_by_everything_but_seed_and_member_settings(study_jobs):
    groups = group_jobs(study_jobs, max_members=5)
    assert sorted(j.id for g in groups for j in g) == sorted(j.id for j in study_jobs)
    assert all(len(g) <= 5 for g in groups)
    for group in groups:
        assert len({group_key(j) for j in group}) == 1
        assert len({j.config["model"]["width"] for j in group}) == 1
        assert len({training_key(j) for j in group}) == len(group)
    # 3 widths × (3 ratios × 5 seeds) + the uncompressed reference's 5 seeds
    assert sorted(len(g) for g in groups) == [5] * 10
    # seeds and lr differ within a group; the width does not
    by_width = {}
    for job in study_jobs:
        by_width.setdefault(job.config["model"]["width"], set()).add(group_key(job))
    assert len(by_width[0.5]) == 1 and len(by_width[1.0]) == 2  # dct and none


def test_jobs_sharing_a_training_or_another_optimizer_train_alone(study_jobs):
    job = study_jobs[0]
    twin = dataclasses.replace(job, id="twin", config={**job.config, "compressor": [{"name": "x"}]})
    assert training_key(twin) == training_key(job)
    assert group_jobs([job, twin]) == [[job], [twin]]
    lr = dataclasses.replace(
        job, id="lr", config={**job.config, "optimizer": {**job.config["optimizer"], "lr": 0.5}}
    )
    assert group_key(lr) == group_key(job) and group_jobs([job, lr]) == [[job, lr]]
    epochs = dataclasses.replace(
        job, id="ep", config={**job.config, "optimizer": {**job.config["optimizer"], "epochs": 1}}
    )
    assert group_key(epochs) != group_key(job)
    adam = dataclasses.replace(job, id="adam", config={**job.config, "optimizer": {"name": "adam"}})
    assert group_key(adam) is None
    assert group_jobs([job, adam, lr], max_members=8) == [[job, lr], [adam]]
    assert group_jobs([job, lr], max_members=1) == [[job], [lr]]


def test_the_executor_splits_larger_candidate_sets_into_groups_of_five(study_jobs):
    from benchharness.grouped_runner import units

    # the study's candidate sets hold 15 jobs (one width, 3 ratios × 5 seeds) and 5
    assert MAX_MEMBERS == 5
    assert [len(g) for g in units(study_jobs, group=True)] == [5] * 10
    assert [len(g) for g in group_jobs(study_jobs, max_members=100)] == [15, 15, 15, 5]
    assert all(len(u) == 1 for u in units(study_jobs, group=False))
