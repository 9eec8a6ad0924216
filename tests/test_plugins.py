"""Registry rules: built-ins and extra plugins register through hooks; names are unique
per kind; a wrong registration is a one-line error naming its owner."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pluggy
import pytest
from pydantic import Field
from torch import nn

from benchharness import BenchError, Model, PluginOptions, Transform, hookimpl, hookspecs
from benchharness.plugins import (
    BUILTIN_MODULES,
    ENTRY_POINT_GROUP,
    KINDS,
    build_registry,
    get_registry,
    plugin_manager,
)


class Tiny(Model):
    """A throwaway model."""

    name = "tiny_test_model"
    version = "7"

    class Options(PluginOptions):
        width: int = Field(3, gt=0, description="hidden units")

    def build(self, input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))


def plugin(name: str, **hooks) -> types.SimpleNamespace:
    """A pluggy plugin object with the given hook implementations."""
    ns = types.SimpleNamespace(__name__=name)
    for hook_name, fn in hooks.items():
        setattr(ns, hook_name, hookimpl(fn))
    return ns


def test_builtins_cover_every_kind_and_register_only_through_hooks():
    registry = get_registry()
    assert {"mnist", "digits"} <= set(registry.names("dataset"))
    assert {"dct", "none"} <= set(registry.names("transform"))
    assert {"compressednet", "lenet300", "lenet5"} <= set(registry.names("model"))
    assert {"sgd", "adam", "dc", "idc", "lc", "retrain"} <= set(registry.names("optimizer"))
    assert {"prune", "quantize", "lowrank", "additive"} <= set(registry.names("compressor"))
    owners = {reg.owner for kind in KINDS for reg in registry.by_kind[kind].values()}
    assert owners <= set(BUILTIN_MODULES)


def test_an_extra_plugin_is_registered_with_its_owner_and_version():
    extra = plugin("my_plugin", register_models=lambda register: register(Tiny))
    pm = plugin_manager([extra])
    entry = build_registry(pm).get("model", "tiny_test_model")
    assert entry.cls is Tiny and entry.version == "7"
    assert entry.owner == pm.get_name(extra)
    registry = get_registry(extra_plugins=[extra])
    instance = registry.create("model", "tiny_test_model", {"width": 5})
    assert instance.options.width == 5
    assert "tiny_test_model" not in get_registry().names("model")  # the default is untouched


def test_a_duplicate_name_names_both_owners():
    first = plugin("first_pkg", register_models=lambda register: register(Tiny))
    second = plugin("second_pkg", register_models=lambda register: register(Tiny))
    pm = plugin_manager([first, second])
    names = {pm.get_name(first), pm.get_name(second)}
    with pytest.raises(BenchError) as info:
        build_registry(pm)
    message = str(info.value)
    assert "model 'tiny_test_model' is registered twice" in message
    assert all(name in message for name in names)
    assert len(message.splitlines()) == 1


def test_a_builtin_name_cannot_be_taken_over():
    class FakeSGD(Tiny):
        name = "compressednet"

    thief = plugin("thief", register_models=lambda register: register(FakeSGD))
    with pytest.raises(BenchError, match="registered twice.*benchharness_plugins.models"):
        get_registry(extra_plugins=[thief])


def test_registering_the_wrong_kind_or_a_nameless_class_is_an_error():
    class Nameless(Model):
        def build(self, input_shape, num_classes):
            return nn.Identity()

    wrong = plugin("wrong", register_transforms=lambda register: register(Tiny))
    with pytest.raises(BenchError, match="not a subclass of benchharness.Transform"):
        get_registry(extra_plugins=[wrong])
    nameless = plugin("nameless", register_models=lambda register: register(Nameless))
    with pytest.raises(BenchError, match="has no `name`"):
        get_registry(extra_plugins=[nameless])


def test_an_implementation_of_an_unknown_hook_is_caught():
    typo = plugin("typo", register_model=lambda register: None)  # missing "s"
    with pytest.raises(pluggy.PluginValidationError):
        plugin_manager([typo])


def test_unknown_plugin_names_list_the_known_ones():
    with pytest.raises(BenchError) as info:
        get_registry().get("transform", "dtc")
    assert str(info.value) == "unknown transform 'dtc' (known: dct, none)"


def test_a_builtin_module_registers_its_classes_only_when_its_hook_is_called():
    import benchharness_plugins.models as models

    pm = pluggy.PluginManager("benchharness")
    pm.add_hookspecs(hookspecs)
    pm.register(models)
    seen: list[type] = []
    pm.hook.register_models(register=seen.append)
    assert {cls.name for cls in seen} == {"compressednet", "lenet300", "lenet5"}
    assert all(issubclass(cls, Model) and not issubclass(cls, Transform) for cls in seen)


def test_from_table_turns_bad_options_into_one_line():
    registry = get_registry()
    sgd = registry.from_table("optimizer", {"name": "sgd", "lr": 0.5})
    assert sgd.name == "sgd" and sgd.options.lr == 0.5
    with pytest.raises(BenchError) as info:
        registry.from_table("optimizer", {"name": "sgd", "lr": -1, "epochz": 3})
    message = str(info.value)
    assert message.startswith("optimizer 'sgd': ") and len(message.splitlines()) == 1
    assert "lr" in message and "epochz" in message
    with pytest.raises(BenchError, match="has no `name`"):
        registry.from_table("optimizer", {"lr": 0.5})


# ------------------------------------------------------- entry points, one by one


class _FakeDistribution:
    """What importlib.metadata.distributions() yields, as far as plugins.py reads it."""

    def __init__(self, name: str, **entry_points: str):
        self.metadata = {"Name": name}
        self.entry_points = [
            importlib.metadata.EntryPoint(ep, value, ENTRY_POINT_GROUP)
            for ep, value in entry_points.items()
        ] + [importlib.metadata.EntryPoint("other", "nowhere_at_all", "another_group")]


def test_a_broken_entry_point_is_one_line_and_the_others_load(monkeypatch):
    good = types.ModuleType("bench_good_fake")
    good.register_models = hookimpl(lambda register: register(Tiny))
    typo = types.ModuleType("bench_typo_fake")
    typo.register_model = hookimpl(lambda register: None)  # missing "s"
    monkeypatch.setitem(sys.modules, good.__name__, good)
    monkeypatch.setitem(sys.modules, typo.__name__, typo)
    dists = [
        _FakeDistribution("bench-broken", broken="bench_brokn"),
        _FakeDistribution("bench-good", good="bench_good_fake"),
        _FakeDistribution("bench-typo", typo="bench_typo_fake"),
    ]
    monkeypatch.setattr(importlib.metadata, "distributions", lambda: iter(dists))

    pm = plugin_manager()
    assert pm.broken == [
        "plugin package 'bench-broken' (entry point broken = bench_brokn): "
        "ModuleNotFoundError: No module named 'bench_brokn'",
        "plugin package 'bench-typo' (entry point typo = bench_typo_fake): "
        "implements unknown hook(s) register_model",
    ]
    assert pm.get_plugin("typo") is None  # unregistered: check_pending passed
    registry = build_registry(pm)
    assert registry.broken == pm.broken
    assert registry.get("model", "tiny_test_model").owner == "bench-good (entry point good)"
    with pytest.raises(BenchError) as info:
        registry.get("model", "from_the_broken_one")
    message = str(info.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("unknown model 'from_the_broken_one' (known: ")
    assert "may come from a plugin package that failed to load: plugin package 'bench-broken'" in (
        message
    )
