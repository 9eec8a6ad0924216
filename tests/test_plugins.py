"""Registry rules: built-ins and extra plugins register through hooks; names are unique
per kind; a wrong registration is a one-line error naming its owner."""

from __future__ import annotations

import types

import pluggy
import pytest
from pydantic import Field
from torch import nn

from benchharness import BenchError, Model, PluginOptions, Transform, hookimpl, hookspecs
from benchharness.plugins import (
    BUILTIN_MODULES,
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
