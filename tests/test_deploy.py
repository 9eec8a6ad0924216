"""The deployable model (Θ run from its stored form) computes what the evaluated dense Δ(Θ)
computes, the runner stores its latency beside the dense one, and the inline and worker
paths set torch's thread count by one rule."""

from __future__ import annotations

import copy
import io
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_runner import jobs_for, row_of, run_all
from torch import Tensor, nn
from torch.nn import functional as F

from benchharness import BenchError, Compressed, deploy, executor
from benchharness.deploy import KeptRows, SparseConv2d, SparseLinear, deployable_model
from benchharness.plugins import Registry, get_registry
from benchharness.progress import StudyProgress
from benchharness_plugins.compressors.lowrank import LowRank
from benchharness_plugins.compressors.pruning import Prune, PruneStructured
from benchharness_plugins.compressors.quantization import Quantize

CPU = torch.device("cpu")
DEPLOYED = (
    "latency_deployed_b1_median_ms",
    "latency_deployed_b1_p90_ms",
    "latency_deployed_batch_median_ms",
    "latency_deployed_batch_p90_ms",
)


def _seeded(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p)
    return module


def _compressed_layer(module: nn.Module, compressor) -> tuple[Compressed, Tensor]:
    """Θ of ``module.weight`` and Δ(Θ) (loaded into ``module``, as the harness does)."""
    theta = compressor.compress({"weight": module.weight.detach()})
    (dense,) = theta.decompress().values()
    with torch.no_grad():
        module.weight.copy_(dense)
    return theta, dense


def _close(got: Tensor, expected: Tensor) -> None:
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


LINEAR = (64, 40)  # in, out
CONV = dict(in_channels=3, out_channels=8, kernel_size=3, stride=2, padding=1, dilation=1)


def _linear_case() -> tuple[nn.Module, Tensor]:
    return _seeded(nn.Linear(*LINEAR)), torch.randn(5, LINEAR[0])


def _conv_case(**changes) -> tuple[nn.Module, Tensor]:
    return _seeded(nn.Conv2d(**{**CONV, **changes})), torch.randn(2, 3, 11, 9)


# ------------------------------------------------------------------ per layer


@pytest.mark.parametrize("case", ["linear", "conv", "conv_dilated"])
def test_low_rank_runs_as_two_factor_layers(case: str) -> None:
    layer, x = {
        "linear": _linear_case,
        "conv": _conv_case,
        "conv_dilated": lambda: _conv_case(dilation=2, padding=2, stride=1),
    }[case]()
    theta, dense = _compressed_layer(layer, LowRank(LowRank.Options(rank=3)))
    form = theta.deploy("weight", layer)
    assert isinstance(form, nn.Sequential) and len(form) == 2
    first, second = form
    assert first.weight.shape[0] == 3 and second.weight.shape[1] == 3
    assert first.bias is None and torch.equal(second.bias, layer.bias)
    if case == "linear":
        expected = x @ dense.T + layer.bias
    else:
        expected = F.conv2d(x, dense, layer.bias, layer.stride, layer.padding, layer.dilation)
        assert second.kernel_size == (1, 1) and first.kernel_size == (3, 3)
    with torch.no_grad():
        _close(form(x), expected)
    assert torch.linalg.matrix_rank(dense.reshape(dense.shape[0], -1)) == 3


@pytest.mark.parametrize("case", ["linear", "conv"])
def test_unstructured_pruning_runs_with_a_sparse_csr_weight(case: str) -> None:
    layer, x = _linear_case() if case == "linear" else _conv_case()
    theta, dense = _compressed_layer(layer, Prune(Prune.Options(keep=0.1)))
    form = theta.deploy("weight", layer)
    assert isinstance(form, SparseLinear if case == "linear" else SparseConv2d)
    assert form.weight.layout == torch.sparse_csr
    assert form.weight._nnz() == round(0.1 * dense.numel()) == int((dense != 0).sum())
    if case == "linear":
        expected = x @ dense.T + layer.bias
    else:
        expected = F.conv2d(x, dense, layer.bias, layer.stride, layer.padding)
    with torch.no_grad():
        _close(form(x), expected)


def test_unstructured_pruning_of_a_grouped_conv_stays_dense() -> None:
    layer, _ = _conv_case(in_channels=4, groups=2)
    theta, _ = _compressed_layer(layer, Prune(Prune.Options(keep=0.1)))
    assert theta.deploy("weight", layer) is None


@pytest.mark.parametrize("case", ["linear", "conv"])
def test_structured_pruning_runs_as_a_smaller_layer(case: str) -> None:
    layer, x = _linear_case() if case == "linear" else _conv_case()
    theta, dense = _compressed_layer(layer, PruneStructured(PruneStructured.Options(keep=0.25)))
    form = theta.deploy("weight", layer)
    assert isinstance(form, KeptRows)
    rows = layer.weight.shape[0]
    kept = round(0.25 * rows)
    assert form.small.weight.shape[0] == kept == int((dense.reshape(rows, -1) != 0).any(1).sum())
    if case == "linear":
        expected = x @ dense.T + layer.bias
        # a removed neuron outputs its bias
        removed = (dense == 0).all(1)
        assert torch.equal(form(x)[:, removed], layer.bias[removed].expand(5, -1))
    else:
        expected = F.conv2d(x, dense, layer.bias, layer.stride, layer.padding)
    with torch.no_grad():
        _close(form(x), expected)


def test_quantisation_has_no_deployable_form() -> None:
    layer, _ = _linear_case()
    theta, _ = _compressed_layer(layer, Quantize(Quantize.Options(k=2)))
    assert theta.deploy("weight", layer) is None


# ------------------------------------------------------------------ whole model


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.fc1 = nn.Linear(8 * 6 * 6, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


def _compress(model: nn.Module, compressor, layers: list[str]) -> Compressed:
    compressor = type(compressor)(
        compressor.Options(**{**compressor.options.model_dump(), "layers": layers})
    )
    theta = compressor.compress({n: w.detach() for n, w in compressor.select(model).items()})
    with torch.no_grad():
        params = dict(model.named_parameters())
        for name, value in theta.decompress().items():
            params[name].copy_(value)
    return theta


def test_deployable_model_computes_the_evaluated_outputs_and_leaves_the_model() -> None:
    model = _seeded(_Net()).eval()
    parts = [
        _compress(model, LowRank(LowRank.Options(rank=2)), ["conv1"]),
        _compress(model, PruneStructured(PruneStructured.Options(keep=0.5)), ["conv2"]),
        _compress(model, Prune(Prune.Options(keep=0.2)), ["fc1"]),
        _compress(model, Quantize(Quantize.Options(k=2)), ["fc2"]),
    ]
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(7, 1, 8, 8)
    with torch.no_grad():
        expected = model(x)
    deployed = deployable_model(model, parts)
    assert deployed is not None and deployed is not model
    assert isinstance(deployed.conv1, nn.Sequential)
    assert isinstance(deployed.conv2, KeptRows)
    assert isinstance(deployed.fc1, SparseLinear)
    assert type(deployed.fc2) is nn.Linear  # quantised: stays dense
    with torch.no_grad():
        _close(deployed(x), expected)
    deploy.check_outputs(model, deployed, x)
    # the evaluated model is untouched
    assert [type(m) for m in model.children()] == [nn.Conv2d, nn.Conv2d, nn.Linear, nn.Linear]
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_nothing_deployable_gives_none() -> None:
    model = _seeded(_Net())
    assert deployable_model(model, []) is None
    assert (
        deployable_model(model, [_compress(model, Quantize(Quantize.Options(k=2)), ["*"])]) is None
    )


def test_deployed_low_rank_parameters_are_the_factors() -> None:
    sizes = [(64, 16), (16, 10)]  # (n inputs, m outputs)
    model = _seeded(nn.Sequential(nn.Linear(*sizes[0]), nn.ReLU(), nn.Linear(*sizes[1])))
    theta = _compress(model, LowRank(LowRank.Options(rank=2)), ["*"])
    deployed = deployable_model(model, [theta])
    assert deployed is not None
    r = 2
    hand = (r * (16 + 64) + 16) + (r * (10 + 16) + 10)
    assert hand == 176 + 62
    assert sum(p.numel() for p in deployed.parameters()) == hand


class _WrongDeploy(Compressed):
    """A Θ whose deployable form computes something else."""

    realised = True

    def __init__(self, weight: Tensor, extra_output: int = 0) -> None:
        self.weight, self.extra_output = weight, extra_output

    def decompress(self) -> dict[str, Tensor]:
        return {"0.weight": self.weight}

    def bits(self) -> int:
        return 0

    def deploy(self, name: str, module: nn.Module) -> nn.Module | None:
        return nn.Linear(module.in_features, module.out_features + self.extra_output)


@pytest.mark.parametrize(("extra_output", "detail"), [(0, "max |difference|"), (1, "shape")])
def test_a_deployable_form_computing_other_outputs_is_refused(
    extra_output: int, detail: str
) -> None:
    model = _seeded(nn.Sequential(nn.Linear(4, 3)))
    deployed = deployable_model(model, [_WrongDeploy(model[0].weight.detach(), extra_output)])
    with pytest.raises(BenchError, match=f"outputs: {re.escape(detail)}"):
        deploy.check_outputs(model, deployed, torch.randn(2, 4))


# ------------------------------------------------------------------ end to end


@pytest.fixture
def registry() -> Registry:
    return get_registry()


def test_runner_stores_the_deployed_latency(tmp_path: Path, registry: Registry) -> None:
    jobs = jobs_for(
        tmp_path,
        registry,
        """
[compressor]
name = "lowrank"
rank = 2

[matrix]
"compressor" = [{ name = "lowrank", rank = 2 }, { name = "quantize", k = 2 },
                { name = "prune", keep = 0.2 }]
""",
        overrides=("measure.activation_stats=false",),
    )
    store = run_all(jobs, registry, tmp_path)
    lowrank, quantize, prune = (row_of(store, job) for job in jobs)
    for row in (lowrank, quantize, prune):
        assert row["status"] == "completed", row["error"]
        assert row["latency_b1_median_ms"] > 0 and row["latency_batch_median_ms"] > 0
    for row in (lowrank, prune):
        assert all(row[key] > 0 for key in DEPLOYED), {k: row[k] for k in DEPLOYED}
    assert all(pd.isna(quantize[key]) for key in DEPLOYED)


# ------------------------------------------------------------------ threads


def test_threads_per_worker_splits_the_budget() -> None:
    assert executor.threads_per_worker(1, budget=6) == 6
    assert executor.threads_per_worker(3, budget=8) == 2
    assert executor.threads_per_worker(4, budget=2) == 1  # at least one
    assert executor.threads_per_worker(2, budget=1) == 1


def test_inline_and_workers_get_threads_by_the_same_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    seen: dict[str, int] = {}
    monkeypatch.setattr(
        executor, "_execute_inline", lambda jobs, device, threads, *a: seen.update(inline=threads)
    )
    monkeypatch.setattr(
        executor,
        "_execute_workers",
        lambda jobs, devices, threads, *a: seen.update(workers=threads),
    )
    for devices in ([CPU], [CPU] * 4):
        executor.execute(
            [],
            devices=devices,
            save=lambda record: None,
            data_dir=tmp_path,
            cache_dir=tmp_path,
            progress=StudyProgress(0, len(devices), live=False, stream=io.StringIO()),
        )
    assert seen == {"inline": 8, "workers": 2}
