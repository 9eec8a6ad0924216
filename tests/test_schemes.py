"""The compression schemes dc, idc, lc and retrain, end to end on sklearn's 8×8 digits.

Jobs are expanded from small TOML specs with :func:`benchharness.matrix.load_jobs` and run
with the real :func:`benchharness.runner.run_job` (or its JobContext, when a test needs the
returned model), with a temporary reference cache.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from typer.testing import CliRunner

from benchharness import BenchError, datacache, hookimpl
from benchharness.jobcontext import JobContext
from benchharness.matrix import load_jobs
from benchharness.plugins import get_registry
from benchharness.runner import run_job, seed_everything
from benchharness_plugins import schemes
from benchharness_plugins.compressors.quantization import Quantize
from benchharness_plugins.schemes import constraint_norm, lagrange_update

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")

# A tiny LeNet300-style MLP on digits: 64-48-24-10, tanh. The reference is 25 epochs of
# Nesterov SGD; LC/iDC take 12 steps of 2 epochs with μ growing 1e-3 → ≈ 0.5.
REFERENCE = (
    '{ name = "sgd", lr = 0.1, momentum = 0.9, nesterov = true, epochs = 25, '
    'batch_size = 64, schedule = "cosine" }'
)
STEPS = "steps = 12, first_step_epochs = 3, epochs_per_step = 2, lr = 0.05, batch_size = 64"
LC = f"{{ name = 'lc', reference = {REFERENCE}, {STEPS}, mu0 = 1e-3, mu_growth = 1.75 }}"


def _spec(tmp_path: Path, optimizers: list[str], compressors: list[str], name: str = "t") -> Path:
    text = textwrap.dedent(
        f"""
        name = "{name}"
        [dataset]
        name = "digits"
        [model]
        name = "lenet300"
        hidden = [48, 24]
        [measure]
        latency = false
        activation_stats = false
        [matrix]
        optimizer = [{", ".join(optimizers)}]
        compressor = [{", ".join(compressors)}]
        """
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _jobs(path: Path):
    _spec_obj, jobs = load_jobs(path, get_registry())
    return jobs


def _run(job, cache: Path):
    return run_job(
        job,
        registry=get_registry(),
        device=CPU,
        data_dir=cache / "data",
        cache_dir=cache,
        events=lambda e: None,
    )


def _curve(record, phase: str, name: str) -> list[float]:
    points = sorted((c.step, c.value) for c in record.curves if c.phase == phase and c.name == name)
    return [v for _, v in points]


def _train(job, cache: Path) -> tuple[torch.nn.Module, JobContext]:
    """What run_job does up to optimizer.train, returning the trained model and context."""
    registry = get_registry()
    _raw, data = datacache.load(job.config, registry, cache / "data")
    seed_everything(job.seed)
    model = registry.from_table("model", job.config["model"]).build(
        data.input_shape, data.num_classes
    )
    compressors = [
        registry.from_table("compressor", c) for c in datacache.as_list(job.config["compressor"])
    ]
    ctx = JobContext(job, data, CPU, registry, compressors, cache, lambda e: None, 1000)
    optimizer = registry.from_table("optimizer", job.config["optimizer"])
    return optimizer.train(model, ctx), ctx


@pytest.fixture(scope="module")
def k2_runs(tmp_path_factory):
    """DC, iDC and LC (AL and QP) at K = 2 from one cached reference."""
    tmp = tmp_path_factory.mktemp("k2")
    dc = f"{{ name = 'dc', reference = {REFERENCE} }}"
    idc = f"{{ name = 'idc', reference = {REFERENCE}, {STEPS} }}"
    qp = LC[:-1] + ", variant = 'qp' }"
    jobs = _jobs(_spec(tmp, [dc, idc, LC, qp], ["{ name = 'quantize', k = 2 }"]))
    cache = tmp / "cache"
    records = [_run(job, cache) for job in jobs]
    for record in records:
        assert record.status == "completed", record.error
    return dict(zip(["dc", "idc", "lc", "qp"], records, strict=True)), jobs, cache


# ----------------------------------------------------------------------- the maths
def test_lagrange_update_by_hand():
    lam = torch.tensor([0.5, -1.0, 0.0, 2.0])
    w = torch.tensor([1.0, 2.0, 3.0, -1.0])
    delta = torch.tensor([1.0, 1.0, 4.0, 1.0])
    # λ − μ(w − Δ) with μ = 0.1: w − Δ = [0, 1, −1, −2]
    expected = torch.tensor([0.5, -1.1, 0.1, 2.2])
    assert torch.allclose(lagrange_update(lam, w, delta, 0.1), expected)
    assert constraint_norm({"a": w}, {"a": delta}) == pytest.approx(6**0.5)


def test_qp_variant_keeps_multipliers_zero(k2_runs):
    records, _, _ = k2_runs
    assert _curve(records["qp"], "lc", "lagrange_norm") == [0.0] * 12
    assert max(_curve(records["lc"], "lc", "lagrange_norm")) > 0


# ------------------------------------------------------------------- LC beats DC
def test_lc_beats_dc_at_k2(k2_runs):
    records, _, _ = k2_runs
    acc = {k: r.metrics["test_accuracy"] for k, r in records.items()}
    reference = _curve(records["dc"], "reference_eval", "test_accuracy")[0]
    assert reference > 0.9
    assert acc["lc"] >= acc["dc"] + 0.05, acc
    assert acc["lc"] >= acc["idc"], acc
    # the harness stores what the scheme compressed. Hand count for 64-48-24-10: 4,464
    # weights at 1 bit, a 2-entry 32-bit codebook per layer, 82 biases at 32 bits, over
    # 32 bits for every one of the 4,546 parameters: 145,472 / 7,280 = 19.98×
    dense = 32 * (64 * 48 + 48 * 24 + 24 * 10 + 48 + 24 + 10)
    compressed = (64 * 48 + 48 * 24 + 24 * 10) + 3 * 2 * 32 + 32 * (48 + 24 + 10)
    assert (dense, compressed) == (145_472, 7_280)
    for record in records.values():
        assert record.metrics["compression_ratio"] == pytest.approx(dense / compressed)
        assert record.metrics["size_bits"] == compressed


def test_lc_logs_each_step_and_the_constraint_shrinks(k2_runs):
    records, _, _ = k2_runs
    lc = records["lc"]
    norms = _curve(lc, "lc", "constraint_norm")
    mus = _curve(lc, "lc", "mu")
    assert len(norms) == len(mus) == len(_curve(lc, "lc", "test_accuracy")) == 12
    assert mus == pytest.approx([1e-3 * 1.75**k for k in range(12)])
    assert norms[-1] < 0.25 * norms[0]
    assert norms[-1] < _curve(lc, "dc", "constraint_norm")[0]
    # the final stored accuracy is that of Δ(Θ) of the last C step
    assert lc.metrics["test_accuracy"] == pytest.approx(_curve(lc, "lc", "test_accuracy")[-1])


def test_all_schemes_share_one_reference(k2_runs):
    records, _, _ = k2_runs
    trained = [k for k, r in records.items() if _curve(r, "reference_train", "train_loss")]
    cached = [k for k, r in records.items() if _curve(r, "reference_cached", "cache_hit")]
    assert trained == ["dc"] and cached == ["idc", "lc", "qp"]
    refs = {k: _curve(r, "reference_eval", "test_accuracy")[0] for k, r in records.items()}
    assert len(set(refs.values())) == 1


# ---------------------------------------------------------- the returned model is Δ(Θ)
def test_lc_returns_exactly_the_compressed_model(k2_runs):
    _, jobs, cache = k2_runs
    model, ctx = _train(jobs[2], cache)  # lc (AL), reference from the cache
    assert ctx.compressed is not None and len(ctx.compressed) == 1
    delta = ctx.compressed[0].decompress()
    params = dict(model.named_parameters())
    assert set(delta) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    for name, value in delta.items():
        assert torch.equal(params[name].detach(), value)
        assert params[name].unique().numel() <= 2


def test_tolerance_stops_early(tmp_path):
    lc = LC[:-1] + ", tolerance = 1e9 }"
    (job,) = _jobs(_spec(tmp_path, [lc], ["{ name = 'quantize', k = 2 }"]))
    record = _run(job, tmp_path / "cache")
    assert record.status == "completed", record.error
    assert len(_curve(record, "lc", "mu")) == 1


# ------------------------------------------------------------------------- retrain
def test_retrain_keeps_the_pruning_mask(tmp_path):
    dc = f"{{ name = 'dc', reference = {REFERENCE} }}"
    retrain = (
        f"{{ name = 'retrain', reference = {REFERENCE}, epochs = 5, lr = 0.02, batch_size = 64 }}"
    )
    dc_job, rt_job = _jobs(_spec(tmp_path, [dc, retrain], ["{ name = 'prune', keep = 0.1 }"]))
    cache = tmp_path / "cache"
    pruned, _ = _train(dc_job, cache)
    tuned, ctx = _train(rt_job, cache)
    changed = False
    for name in ("fc1.weight", "fc2.weight", "fc3.weight"):
        before = dict(pruned.named_parameters())[name].detach()
        after = dict(tuned.named_parameters())[name].detach()
        assert torch.equal(before == 0, after == 0), name  # same mask, zeros exactly 0
        changed |= not torch.equal(before, after)
    assert changed, "fine-tuning changed no surviving weight"
    delta = ctx.compressed[0].decompress()
    for name, value in delta.items():
        assert torch.equal(dict(tuned.named_parameters())[name].detach(), value)
    record = _run(rt_job, cache)
    assert record.status == "completed", record.error
    assert _curve(record, "retrain_final", "recompress_distance") == [0.0]
    assert record.metrics["test_accuracy"] >= _curve(record, "dc", "test_accuracy")[0]


# -------------------------------------------------------------------------- errors
def test_no_compressor_is_a_clear_error(tmp_path):
    path = tmp_path / "none.toml"
    path.write_text(
        '[dataset]\nname = "digits"\n[model]\nname = "lenet300"\nhidden = [8]\n'
        '[optimizer]\nname = "lc"\n'
    )
    (job,) = _jobs(path)
    record = _run(job, tmp_path / "cache")
    assert record.status == "failed"
    assert "[compressor]" in record.error and "lc" in record.error
    assert "Traceback" not in record.error and "traceback" not in record.extra


def test_overlapping_compressors_are_an_error(tmp_path):
    lc = LC
    (job,) = _jobs(
        _spec(
            tmp_path,
            [lc],
            ["[{ name = 'quantize', k = 2 }, { name = 'prune', keep = 0.1, layers = ['fc1'] }]"],
        )
    )
    with pytest.raises(BenchError, match="both select fc1.weight"):
        _train(job, tmp_path / "cache")


def test_options_are_documented_and_validated():
    for cls in (schemes.DC, schemes.IDC, schemes.LC, schemes.Retrain):
        assert cls.summary()
        for name, field in cls.Options.model_fields.items():
            assert field.description, f"{cls.name}.{name}"
        assert cls.Options().reference == schemes.DEFAULT_REFERENCE
    with pytest.raises(ValueError, match="name"):
        schemes.LC.Options(reference={"epochs": 3})
    with pytest.raises(ValueError):
        schemes.LC.Options(mu_growth=1.0)
    with pytest.raises(ValueError):
        schemes.LC.Options(variant="admm")


# ------------------------------------------------------------------- the study spec
def test_lenet300_spec_validates():
    from benchharness.cli import app

    spec = str(REPO / "specs" / "lenet300_lc.toml")
    runner = CliRunner()
    for extra in ([], ["--quick"]):
        result = runner.invoke(app, ["validate", spec, *extra])
        assert result.exit_code == 0, result.output
        assert "12 jobs" in result.output
    _, jobs = load_jobs(spec, get_registry(), quick=True)
    names = {(j.config["optimizer"]["name"], str(j.axes.get("compressor"))[:40]) for j in jobs}
    assert {n for n, _ in names} == {"sgd", "dc", "idc", "lc"}
    # every scheme of the quick study shares one reference recipe
    refs = {
        str(j.config["optimizer"].get("reference"))
        for j in jobs
        if j.config["optimizer"]["name"] != "sgd"
    }
    assert len(refs) == 1


# ------------------------------------------------------------ the C step and the lr
class _SpyQuantize(Quantize):
    """quantize that records, at every C step, μ, the weights it is given and the
    model's own weights w at that moment (via the model it selected from)."""

    name = "spy_quantize"
    calls: ClassVar[list[dict]] = []

    def select(self, model):
        self._model = model
        return super().select(model)

    def with_mu(self, mu):
        self._mu = mu
        return self

    def compress(self, weights):
        params = dict(self._model.named_parameters())
        part = super().compress(weights)
        _SpyQuantize.calls.append(
            {
                "mu": getattr(self, "_mu", None),
                "given": {n: w.detach().clone() for n, w in weights.items()},
                "w": {n: params[n].detach().clone() for n in weights},
                "delta": {n: t.detach().clone() for n, t in part.decompress().items()},
            }
        )
        return part


class _Spies:
    @hookimpl
    def register_compressors(self, register):
        register(_SpyQuantize)


def test_lc_c_step_sees_the_lambda_shifted_weights(tmp_path):
    """Recompute λ from the recorded w and Δ(Θ) (λ_0 = 0, λ ← λ − μ(w − Δ)) and check that
    each C step was given w − λ/μ: the augmented-Lagrangian shift, not w itself."""
    _SpyQuantize.calls.clear()
    registry = get_registry(extra_plugins=[_Spies()])
    lc = LC.replace("steps = 12", "steps = 4")
    path = _spec(tmp_path, [lc], ["{ name = 'spy_quantize', k = 2 }"])
    (job,) = load_jobs(path, registry)[1]
    record = run_job(
        job, registry=registry, device=CPU, data_dir=tmp_path, cache_dir=tmp_path,
        events=lambda e: None,
    )  # fmt: skip
    assert record.status == "completed", record.error
    dc_call, *steps = _SpyQuantize.calls
    assert len(steps) == 4
    lam = {n: torch.zeros_like(t) for n, t in dc_call["w"].items()}
    shifted_somewhere = False
    for call in steps:
        mu = call["mu"]
        for n, w in call["w"].items():
            expected = w - lam[n] / mu
            assert torch.allclose(call["given"][n], expected, atol=1e-6), n
            shifted_somewhere |= not torch.allclose(call["given"][n], w)
        lam = {n: lam[n] - mu * (call["w"][n] - call["delta"][n]) for n in lam}
    assert shifted_somewhere  # λ ≠ 0 after the first step, so the shift is real


@pytest.mark.parametrize("clip", [True, False])
def test_lc_learning_rate_is_clipped_to_one_over_mu(tmp_path, clip):
    # μ_k = 20·1.5^k: 1/μ = 0.05, 0.033, ... is below lr·0.98^k = 0.05·0.98^k from k = 1
    lc = (
        f"{{ name = 'lc', reference = {REFERENCE}, steps = 3, first_step_epochs = 1, "
        f"epochs_per_step = 1, lr = 0.05, batch_size = 64, mu0 = 20.0, mu_growth = 1.5, "
        f"clip_lr = {str(clip).lower()} }}"
    )
    (job,) = _jobs(_spec(tmp_path, [lc], ["{ name = 'quantize', k = 2 }"]))
    record = _run(job, tmp_path / "cache")
    assert record.status == "completed", record.error
    base = [0.05 * 0.98**k for k in range(3)]
    mus = [20.0 * 1.5**k for k in range(3)]
    expected = [min(b, 1 / m) for b, m in zip(base, mus, strict=True)] if clip else base
    assert _curve(record, "lc", "lr") == pytest.approx(expected)
    assert _curve(record, "lc_l", "lr") == pytest.approx(expected)  # what SGD used
