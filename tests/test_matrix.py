"""Expanding a spec into jobs: product, exclude, include, seeds, ids, and validation errors.

Throwaway plugins (names prefixed ``st_``) are registered through
``get_registry(extra_plugins=...)``, so the tests do not depend on the built-in plugins.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import pytest
from pydantic import Field, PositiveInt, ValidationError, field_validator

from benchharness import (
    BenchError,
    Compressor,
    CompressorOptions,
    Dataset,
    Model,
    Optimizer,
    PluginOptions,
    Transform,
    hookimpl,
)
from benchharness.matrix import (
    Job,
    MatrixTooLarge,
    describe_job,
    expand,
    job_bound,
    load_jobs,
    plan_jobs,
)
from benchharness.plugin_tables import PluginTable, plugin_table_fields
from benchharness.plugins import Registry, get_registry
from benchharness.spec import load_spec

SPECS = Path(__file__).parent / "specs"
WIDTH_RATIO = SPECS / "width_ratio.toml"
MINIMAL = SPECS / "minimal.toml"


# --------------------------------------------------------------- throwaway plugins
def _in_unit_interval(value: float) -> float:
    if not 0 < value <= 1:
        raise ValueError("must be in (0, 1]")
    return value


class StData(Dataset):
    """Toy dataset."""

    name = "st_data"

    class Options(PluginOptions):
        root: str = Field("toy", description="where it lives")

    def load(self, data_dir):
        raise NotImplementedError


class StDct(Transform):
    """Toy DCT."""

    name = "st_dct"

    class Options(PluginOptions):
        ratio: float = Field(0.5, description="fraction of coefficients kept")
        _check = field_validator("ratio")(_in_unit_interval)

    def apply(self, data):
        return data


class StNone(Transform):
    """Identity."""

    name = "st_none"

    def apply(self, data):
        return data


class StNet(Model):
    """Toy network."""

    name = "st_net"

    class Options(PluginOptions):
        width: float = Field(1.0, description="width multiplier")
        depth: int = Field(2, description="hidden layers")

    def build(self, input_shape, num_classes):
        raise NotImplementedError


class StSgd(Optimizer):
    """Toy SGD."""

    name = "st_sgd"

    class Options(PluginOptions):
        epochs: PositiveInt = Field(10, description="passes over the data")
        lr: float = Field(0.1, description="learning rate")

    def train(self, model, ctx):
        return model


class StQuant(Compressor):
    """Toy quantiser."""

    name = "st_quant"

    class Options(CompressorOptions):
        k: int = Field(2, description="codebook size")

    def compress(self, weights):
        raise NotImplementedError


class StPrune(Compressor):
    """Toy pruning."""

    name = "st_prune"

    class Options(CompressorOptions):
        keep: float = Field(0.1, description="fraction kept")
        _check = field_validator("keep")(_in_unit_interval)

    def compress(self, weights):
        raise NotImplementedError


class StLowRank(Compressor):
    """Toy low-rank, with a required option."""

    name = "st_lowrank"

    class Options(CompressorOptions):
        rank: int = Field(description="target rank")

    def compress(self, weights):
        raise NotImplementedError


class ToyPlugins:
    @hookimpl
    def register_datasets(self, register):
        register(StData)

    @hookimpl
    def register_transforms(self, register):
        register(StDct)
        register(StNone)

    @hookimpl
    def register_models(self, register):
        register(StNet)

    @hookimpl
    def register_optimizers(self, register):
        register(StSgd)

    @hookimpl
    def register_compressors(self, register):
        register(StQuant)
        register(StPrune)
        register(StLowRank)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return get_registry(extra_plugins=[ToyPlugins()])


BASE = """
[dataset]
name = "st_data"
[model]
name = "st_net"
[optimizer]
name = "st_sgd"
"""

DATA_DEFAULTS = {"train_subset": None, "test_subset": None, "subset_seed": 0}
MEASURE_DEFAULTS = {
    "latency": True,
    "latency_repeats": 30,
    "latency_warmup": 5,
    "latency_batch_size": 128,
    "flops": True,
    "activation_stats": True,
    "eval_batch_size": 1000,
}
MINIMAL_CONFIG: dict[str, Any] = {
    "dataset": {"name": "st_data", "root": "toy"},
    "data": DATA_DEFAULTS,
    "transform": [],
    "model": {"name": "st_net", "width": 1.0, "depth": 2},
    "optimizer": {"name": "st_sgd", "epochs": 10, "lr": 0.1},
    "compressor": [],
    "measure": MEASURE_DEFAULTS,
    "seed": 0,
}


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def jobs_of(path: Path, registry: Registry, *overrides: str, quick: bool = False) -> list[Job]:
    return load_jobs(path, registry, overrides=overrides, quick=quick)[1]


def pairs(jobs: list[Job]) -> list[tuple[float, float]]:
    return [(j.config["model"]["width"], j.config["transform"]["ratio"]) for j in jobs]


def error_lines(path: Path, registry: Registry, *overrides: str) -> list[str]:
    with pytest.raises(BenchError) as info:
        load_jobs(path, registry, overrides=overrides)
    return str(info.value).splitlines()


def digest(spec_name: str, config: dict[str, Any]) -> str:
    text = json.dumps({"spec": spec_name, "config": config}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------ expansion
def test_minimal_spec_is_one_fully_resolved_job(registry):
    spec, jobs = load_jobs(MINIMAL, registry)
    assert len(jobs) == 1
    job = jobs[0]
    assert job.config == MINIMAL_CONFIG
    assert json.loads(json.dumps(job.config)) == job.config  # JSON-able
    assert job.axes == {}
    assert job.seed == 0
    assert (job.spec_name, job.spec_hash, job.quick) == ("minimal", spec.hash, False)


def test_product_of_two_axes_in_spec_order(registry):
    overrides = ["matrix.include=[]", "matrix.exclude=[]", "matrix.seeds=[0]"]
    jobs = jobs_of(WIDTH_RATIO, registry, *overrides)
    assert pairs(jobs) == [
        (0.5, 0.1), (0.5, 0.3), (0.5, 0.5),
        (1.0, 0.1), (1.0, 0.3), (1.0, 0.5),
        (2.0, 0.1), (2.0, 0.3), (2.0, 0.5),
    ]  # fmt: skip
    assert [j.axes for j in jobs[:2]] == [
        {"model.width": 0.5, "transform.ratio": 0.1},
        {"model.width": 0.5, "transform.ratio": 0.3},
    ]
    assert jobs[0].config == {
        "dataset": {"name": "st_data", "root": "toy"},
        "data": {**DATA_DEFAULTS, "train_subset": 20000},
        "transform": {"name": "st_dct", "ratio": 0.1},
        "model": {"name": "st_net", "width": 0.5, "depth": 2},
        "optimizer": {"name": "st_sgd", "epochs": 30, "lr": 0.1},
        "compressor": [],
        "measure": MEASURE_DEFAULTS,
        "seed": 0,
    }


def test_product_of_three_axes_including_a_defaulted_option(registry, tmp_path):
    # model.depth is not written in the base spec: it is a default of st_net's Options
    text = BASE + '[matrix]\n"model.width" = [1, 2]\n"model.depth" = [1, 2, 3]\n'
    text += '"optimizer.lr" = [0.1, 0.01]\n'
    jobs = jobs_of(write(tmp_path, text), registry)
    assert len(jobs) == 12
    got = [(j.config["model"]["width"], j.config["model"]["depth"], j.config["optimizer"]["lr"])
           for j in jobs]  # fmt: skip
    assert got == [(w, d, lr) for w in (1.0, 2.0) for d in (1, 2, 3) for lr in (0.1, 0.01)]
    assert all(type(j.config["model"]["width"]) is float for j in jobs)  # 1 → 1.0
    assert jobs[0].axes == {"model.width": 1.0, "model.depth": 1, "optimizer.lr": 0.1}


def test_exclude_removes_exactly_the_matching_combos(registry):
    jobs = jobs_of(WIDTH_RATIO, registry, "matrix.include=[]", "matrix.seeds=[0]")
    full = [(w, r) for w in (0.5, 1.0, 2.0) for r in (0.1, 0.3, 0.5)]
    assert pairs(jobs) == [p for p in full if p != (2.0, 0.1)]

    one_key = jobs_of(
        WIDTH_RATIO, registry, "matrix.include=[]", "matrix.seeds=[0]",
        'matrix.exclude=[{"model.width" = 0.5}, {"transform.ratio" = 0.5}]',
    )  # fmt: skip
    assert pairs(one_key) == [(1.0, 0.1), (1.0, 0.3), (2.0, 0.1), (2.0, 0.3)]


def test_include_adds_its_configs_times_seeds_with_base_values(registry):
    jobs = jobs_of(WIDTH_RATIO, registry)
    assert len(jobs) == (9 - 1 + 1) * 2
    included = jobs[-2:]
    assert [j.seed for j in included] == [0, 1]
    for job in included:
        assert job.config["model"] == {"name": "st_net", "width": 4.0, "depth": 2}
        assert job.config["transform"] == {"name": "st_none"}
        assert job.config["data"]["train_subset"] == 20000  # base value
        assert job.config["optimizer"]["epochs"] == 30
        assert job.axes == {
            "model.width": 4.0,
            "transform.ratio": None,  # st_none has no ratio
            "transform": {"name": "st_none"},
        }
    # keys an include does not name take the base spec's values, not an axis's
    only_ratio = jobs_of(
        WIDTH_RATIO, registry, "matrix.seeds=[0]", 'matrix.include=[{"transform.ratio" = 0.9}]'
    )
    assert pairs(only_ratio[-1:]) == [(1.0, 0.9)]
    assert only_ratio[-1].axes == {"model.width": 1.0, "transform.ratio": 0.9}


def test_table_valued_axis_replaces_the_subtree(registry, tmp_path):
    text = BASE + (
        '[compressor]\nname = "st_quant"\nk = 8\n'
        "[matrix]\n"
        'compressor = [{name = "st_quant", k = 4}, {name = "st_prune", keep = 0.05},'
        ' [{name = "st_prune"}, {name = "st_quant"}]]\n'
    )
    jobs = jobs_of(write(tmp_path, text), registry)
    assert [j.config["compressor"] for j in jobs] == [
        {"name": "st_quant", "layers": ["*"], "k": 4},
        {"name": "st_prune", "layers": ["*"], "keep": 0.05},  # base k = 8 is gone
        [
            {"name": "st_prune", "layers": ["*"], "keep": 0.1},
            {"name": "st_quant", "layers": ["*"], "k": 2},
        ],
    ]
    # the axis value is kept as written; the config has it resolved
    assert jobs[1].axes == {"compressor": {"name": "st_prune", "keep": 0.05}}

    # an exclude key may reach inside a table-valued axis
    path = write(tmp_path, text + 'exclude = [{"compressor.name" = "st_prune"}]\n', "y.toml")
    assert [j.config["compressor"] for j in jobs_of(path, registry)] == [
        {"name": "st_quant", "layers": ["*"], "k": 4},
        [
            {"name": "st_prune", "layers": ["*"], "keep": 0.1},
            {"name": "st_quant", "layers": ["*"], "k": 2},
        ],
    ]


def test_array_transform_axis_by_index(registry, tmp_path):
    text = BASE + '[[transform]]\nname = "st_dct"\n[[transform]]\nname = "st_none"\n'
    text += '[matrix]\n"transform.0.ratio" = [0.2, 0.4]\n'
    jobs = jobs_of(write(tmp_path, text), registry)
    assert [j.config["transform"] for j in jobs] == [
        [{"name": "st_dct", "ratio": 0.2}, {"name": "st_none"}],
        [{"name": "st_dct", "ratio": 0.4}, {"name": "st_none"}],
    ]


def test_identical_configurations_are_kept_once(registry, tmp_path):
    text = BASE + '[matrix]\n"model.width" = [1, 1.0, 2]\n'
    text += 'include = [{"model.width" = 2.0}, {"model.depth" = 2}]\n'
    jobs = jobs_of(write(tmp_path, text), registry)
    assert [j.config["model"]["width"] for j in jobs] == [1.0, 2.0]
    assert len({j.id for j in jobs}) == 2


def test_seeds_and_config_ids(registry):
    jobs = jobs_of(WIDTH_RATIO, registry)
    assert len({j.id for j in jobs}) == 18
    groups: dict[str, list[int]] = {}
    for job in jobs:
        assert job.config["seed"] == job.seed
        groups.setdefault(job.config_id, []).append(job.seed)
    assert list(groups.values()) == [[0, 1]] * 9
    without_seed = {k: v for k, v in jobs[0].config.items() if k != "seed"}
    assert jobs[0].config_id == digest("width_ratio", without_seed)


# -------------------------------------------------------------------------------- ids
def test_ids_are_the_documented_hash_and_stable(registry):
    job = jobs_of(MINIMAL, registry)[0]
    assert job.id == digest("minimal", MINIMAL_CONFIG)
    # pinned: canonical JSON must not drift. (Changed once, deliberately, when [measure]
    # gained latency_batch_size: a new harness default is part of the resolved config.)
    assert job.id == "32e172f505463bd4"
    assert jobs_of(MINIMAL, registry)[0] == job


def test_same_resolved_config_same_id_however_written(registry, tmp_path):
    terse = write(tmp_path, 'name = "same"\n' + BASE, "a.toml")
    verbose = write(
        tmp_path,
        """
name = "same"
description = "written differently"
transform = []
[optimizer]
lr = 0.1
name = "st_sgd"
epochs = 10
[measure]
latency = true
eval_batch_size = 1000
[model]
depth = 2
width = 1
name = "st_net"
[data]
subset_seed = 0
[dataset]
root = "toy"
name = "st_data"
""",
        "b.toml",
    )
    (a,), (b,) = jobs_of(terse, registry), jobs_of(verbose, registry)
    assert a.config == b.config
    assert (a.id, a.config_id) == (b.id, b.config_id)

    (wider,) = jobs_of(terse, registry, "model.width=2")
    (other_seed,) = jobs_of(terse, registry, "matrix.seeds=[1]")
    (other_name,) = jobs_of(terse, registry, 'name="other"')
    assert len({a.id, wider.id, other_seed.id, other_name.id}) == 4
    assert other_seed.config_id == a.config_id
    assert wider.config_id != a.config_id


# ------------------------------------------------------------------------ --set, quick
def test_set_overrides_reach_the_jobs(registry):
    jobs = jobs_of(
        WIDTH_RATIO, registry,
        "matrix.model.width=[3]", "matrix.include=[]", "matrix.seeds=[4]", "optimizer.lr=0.5",
    )  # fmt: skip
    assert pairs(jobs) == [(3.0, 0.1), (3.0, 0.3), (3.0, 0.5)]
    assert {j.seed for j in jobs} == {4}
    assert {j.config["optimizer"]["lr"] for j in jobs} == {0.5}


def test_quick(registry):
    spec, jobs = load_jobs(WIDTH_RATIO, registry, quick=True)
    assert len(jobs) == 9  # 8 combos + 1 include, first seed only
    assert {j.seed for j in jobs} == {0}
    assert all(j.quick for j in jobs)
    assert {j.config["optimizer"]["epochs"] for j in jobs} == {2}
    assert {j.config["data"]["train_subset"] for j in jobs} == {1000}
    assert {j.spec_hash for j in jobs} == {spec.hash}
    assert spec.hash != load_spec(WIDTH_RATIO).hash


def test_expand_takes_a_loaded_spec(registry):
    spec = load_spec(WIDTH_RATIO)
    assert expand(spec, registry) == jobs_of(WIDTH_RATIO, registry)


def test_describe_job(registry, tmp_path):
    jobs = jobs_of(WIDTH_RATIO, registry)
    assert describe_job(jobs[0]) == f"{jobs[0].id}  seed=0  model.width=0.5  transform.ratio=0.1"
    assert describe_job(jobs[-1]) == (
        f"{jobs[-1].id}  seed=1  model.width=4.0  transform.ratio=-  transform=st_none"
    )
    quick = jobs_of(MINIMAL, registry, quick=True)[0]
    assert describe_job(quick) == f"{quick.id}  seed=0  (quick)"
    text = BASE + '[matrix]\ncompressor = [{name = "st_quant", k = 4}]\n'
    (job,) = jobs_of(write(tmp_path, text), registry)
    assert describe_job(job) == f"{job.id}  seed=0  compressor=st_quant(k=4)"


# ----------------------------------------------------------------------------- errors
def test_unknown_plugin_lists_known_names(registry, tmp_path):
    path = write(tmp_path, BASE.replace('"st_net"', '"lenet"'))
    known = ", ".join(registry.names("model"))
    assert "st_net" in known
    assert error_lines(path, registry) == [
        f"{path}: model.name — unknown model 'lenet' (known: {known})"
    ]


def test_unknown_option(registry, tmp_path):
    path = write(tmp_path, BASE.replace('name = "st_net"', 'name = "st_net"\nwidht = 2'))
    assert error_lines(path, registry) == [
        f"{path}: model.widht — unknown option for model 'st_net' (did you mean 'width'?); "
        "known: depth, width"
    ]


def test_out_of_range_value(registry, tmp_path):
    path = write(tmp_path, BASE + '[transform]\nname = "st_dct"\nratio = 1.5\n')
    assert error_lines(path, registry) == [f"{path}: transform.ratio — must be in (0, 1], got 1.5"]


def test_out_of_range_in_some_jobs_is_reported_once_per_value(registry, tmp_path):
    text = BASE + '[[transform]]\nname = "st_dct"\n'
    text += '[matrix]\n"transform.0.ratio" = [0.5, 1.5, 2.0]\n"model.width" = [1, 2, 3]\n'
    path = write(tmp_path, text)
    assert error_lines(path, registry) == [
        f"{path}: transform.0.ratio — must be in (0, 1], got 1.5",
        f"{path}: transform.0.ratio — must be in (0, 1], got 2.0",
    ]


def test_pydantic_messages_and_required_options(registry, tmp_path):
    text = BASE.replace('name = "st_sgd"', 'name = "st_sgd"\nepochs = 0\nlr = "fast"')
    text += '[[compressor]]\nname = "st_lowrank"\n'
    path = write(tmp_path, text)
    assert error_lines(path, registry) == [
        f"{path}: optimizer.epochs — input should be greater than 0, got 0",
        f'{path}: optimizer.lr — input should be a valid number, got "fast"',
        f"{path}: compressor.0.rank — field required",
    ]


def test_harness_sections(registry, tmp_path):
    text = BASE + "[data]\ntrain_subset = 0\n[measure]\nlatncy = false\n"
    path = write(tmp_path, text)
    assert error_lines(path, registry) == [
        f"{path}: data.train_subset — input should be greater than 0, got 0",
        f"{path}: measure.latncy — unknown option for [measure] (did you mean 'latency'?); "
        "known: activation_stats, eval_batch_size, flops, latency, latency_batch_size, "
        "latency_repeats, "
        "latency_warmup",
    ]


def test_unknown_top_level_key(registry, tmp_path):
    path = write(tmp_path, BASE + '[modle]\nname = "st_net"\n')
    assert error_lines(path, registry) == [
        f"{path}: modle — unknown section (did you mean 'model'?); "
        "known: compressor, compute, data, dataset, measure, model, optimizer, transform"
    ]


def test_missing_sections_and_names(registry, tmp_path):
    path = write(tmp_path, '[model]\nwidth = 2\n[optimizer]\nname = "st_sgd"\n')
    assert error_lines(path, registry) == [
        f"{path}: dataset — missing: the spec needs a [dataset] table; "
        f"known: {', '.join(registry.names('dataset'))}",
        f"{path}: model.name — missing: which model? known: {', '.join(registry.names('model'))}",
    ]


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        ('"model.widht" = [1, 2]',
         "unknown key of model (did you mean 'width'?); known: depth, name, width"),
        ('"modle.width" = [1, 2]',
         "unknown key of the spec (did you mean 'model'?); "
         "known: compressor, compute, data, dataset, measure, model, optimizer, transform"),
        ('"transform.ratio" = [0.1]',
         "transform is an array: index it, e.g. transform.0.ratio"),
        ('"transform.2.ratio" = [0.1]', "transform has 1 element(s), no index 2"),
    ],
)  # fmt: skip
def test_bad_axis_path(registry, tmp_path, axis, message):
    text = BASE + '[[transform]]\nname = "st_dct"\n[matrix]\n' + axis + "\n"
    path = write(tmp_path, text)
    key = axis.split(" = ")[0]
    assert error_lines(path, registry) == [f"{path}: matrix.{key} — {message}"]


def test_bad_exclude_key_and_claim_key(registry, tmp_path):
    text = BASE + '[matrix]\n"model.width" = [1, 2]\nexclude = [{"model.widht" = 1}]\n'
    text += '[[claims]]\nmatch = {"model.depht" = 2}\nmetric = "test_accuracy"\nvalue = 0.9\n'
    path = write(tmp_path, text)
    assert error_lines(path, registry) == [
        f'{path}: matrix.exclude.0."model.widht" — unknown matrix axis '
        "(did you mean 'model.width'?); known: model.width",
        f'{path}: claims.0.match."model.depht" — matches no key of any job\'s configuration',
    ]


def test_several_problems_one_line_each_in_one_error(registry, tmp_path):
    text = """
[dataset]
name = "mnist_typo"
[transform]
name = "st_dct"
ratio = 1.5
[model]
name = "st_net"
widht = 2
[optimizer]
name = "st_sgd"
[extra]
x = 1
[matrix]
"model.depth" = [1, 2]
"optimizer.epoch" = [1]
seeds = []
"""
    path = write(tmp_path, text)
    known = ", ".join(registry.names("dataset"))
    assert error_lines(path, registry, "measure.flops=maybe") == [
        f"{path}: matrix.seeds — must be a non-empty array of integers, got []",
        f'{path}: matrix."optimizer.epoch" — unknown key of optimizer '
        "(did you mean 'epochs'?); known: epochs, lr, name",
        f"{path}: extra — unknown section; "
        "known: compressor, compute, data, dataset, measure, model, optimizer, transform",
        f"{path}: dataset.name — unknown dataset 'mnist_typo' (known: {known})",
        f"{path}: transform.ratio — must be in (0, 1], got 1.5",
        f"{path}: model.widht — unknown option for model 'st_net' (did you mean 'width'?); "
        "known: depth, width",
        f'{path}: measure.flops — input should be a valid boolean, got "maybe"',
    ]


# ------------------------------------------------------------ nested plugin tables
class StWrap(Optimizer):
    """Toy wrapping optimizer: a `base` optimizer table and a list of `extras`."""

    name = "st_wrap"

    class Options(PluginOptions):
        base: Annotated[dict[str, Any], PluginTable("optimizer")] = Field(
            default_factory=lambda: {"name": "st_sgd"}, description="the wrapped optimizer"
        )
        extras: Annotated[list[dict[str, Any]], PluginTable("compressor", many=True)] = Field(
            default_factory=list, description="compressor tables"
        )
        scale: float = Field(1.0, description="a plain option")

    def train(self, model, ctx):
        return model


class WrapPlugin:
    @hookimpl
    def register_optimizers(self, register):
        register(StWrap)


@pytest.fixture(scope="module")
def wrap_registry() -> Registry:
    return get_registry(extra_plugins=[ToyPlugins(), WrapPlugin()])


def test_nested_plugin_tables_are_validated_with_full_key_paths(wrap_registry, tmp_path):
    wrap = 'name = "st_wrap"\nscale = true\n'
    wrap += 'base = { name = "st_wrap", base = { name = "st_sgd", lr = inf, epochs = 0 } }\n'
    wrap += 'extras = [{ name = "st_quant", k = "2" }, { name = "st_nope" }, { k = 2 }]\n'
    path = write(tmp_path, BASE.replace('name = "st_sgd"', wrap))
    lines = error_lines(path, wrap_registry)
    assert [line.split(" (known: ")[0].split("? known: ")[0] for line in lines] == [
        f"{path}: optimizer.base.base.epochs — input should be greater than 0, got 0",
        f"{path}: optimizer.base.base.lr — input should be a finite number, got inf",
        f'{path}: optimizer.extras.0.k — input should be a valid integer, got "2"',
        f"{path}: optimizer.extras.1.name — unknown compressor 'st_nope'",
        f"{path}: optimizer.extras.2.name — missing: which compressor",
        f"{path}: optimizer.scale — input should be a valid number, got true",
    ]


def test_valid_nested_tables_are_kept_as_written(wrap_registry, tmp_path):
    wrap = 'name = "st_wrap"\nbase = { name = "st_sgd", lr = 1 }\nextras = [{ name = "st_prune" }]'
    path = write(tmp_path, BASE.replace('name = "st_sgd"', wrap))
    (job,) = load_jobs(path, wrap_registry)[1]
    assert job.config["optimizer"] == {
        "name": "st_wrap",
        "base": {"name": "st_sgd", "lr": 1},
        "extras": [{"name": "st_prune"}],
        "scale": 1.0,
    }
    assert plugin_table_fields(StWrap.Options) == {
        "base": PluginTable("optimizer"),
        "extras": PluginTable("compressor", many=True),
    }
    with pytest.raises(ValidationError, match="must be an optimizer table"):
        StWrap.Options(base={"lr": 1})


# ---------------------------------------------------------------- lazy expansion
def test_plan_counts_jobs_without_making_them(registry, tmp_path):
    text = BASE + (
        '[matrix]\n"model.width" = [1, 2, 2.0, 3]\n"optimizer.lr" = [0.1, 0.2]\n'
        "seeds = [0, 1, 1, 2]\n"
        'exclude = [{ "model.width" = 3, "optimizer.lr" = 0.2 }]\n'
        'include = [{ "model.width" = 9 }]\n'
    )
    path = write(tmp_path, text)
    spec, jobs = load_jobs(path, registry)
    plan = plan_jobs(path, registry)
    # widths 1, 2 (2.0 is the same), 3 × 2 lrs − 1 excluded + 1 include = 6 configs × 3 seeds
    assert len(plan.configs) == 6 and len(plan) == 18 == len(jobs)
    assert [job.id for job in plan.jobs()] == [job.id for job in jobs]
    assert job_bound(spec) == (4 * 2 + 1) * 3
    with pytest.raises(MatrixTooLarge) as info:
        plan_jobs(path, registry, max_jobs=26)
    assert info.value.jobs == 27
    assert str(info.value) == f"{path}: matrix — expands to up to 27 jobs (over 26)"
    assert len(plan_jobs(path, registry, max_jobs=27)) == 18
