"""The plugin manager: built-in plugins plus the ``benchharness`` entry-point group."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pluggy
from pydantic import ValidationError

from benchharness import api, hookspecs, training_api
from benchharness.errors import BenchError

ENTRY_POINT_GROUP = "benchharness"

BUILTIN_MODULES = (
    "benchharness_plugins.datasets",
    "benchharness_plugins.datasets_cifar",
    "benchharness_plugins.transforms",
    "benchharness_plugins.models",
    "benchharness_plugins.models_cifar",
    "benchharness_plugins.optimizers",
    "benchharness_plugins.compressors",
    "benchharness_plugins.schemes",
)

KINDS: dict[str, type[api.Plugin]] = {
    "dataset": api.Dataset,
    "transform": api.Transform,
    "model": api.Model,
    "optimizer": training_api.Optimizer,
    "compressor": api.Compressor,
}

_HOOK_OF_KIND = {
    "dataset": "register_datasets",
    "transform": "register_transforms",
    "model": "register_models",
    "optimizer": "register_optimizers",
    "compressor": "register_compressors",
}


@dataclass(frozen=True)
class Registered:
    cls: type[api.Plugin]
    owner: str  # the pluggy plugin (module / distribution) that registered it

    @property
    def version(self) -> str:
        return str(getattr(self.cls, "version", "0"))


@dataclass
class Registry:
    """Every registered plugin class, by kind and name."""

    by_kind: dict[str, dict[str, Registered]] = field(
        default_factory=lambda: {kind: {} for kind in KINDS}
    )
    # one line per entry point of the `benchharness` group that could not be loaded
    broken: list[str] = field(default_factory=list)

    def add(self, kind: str, cls: Any, owner: str) -> None:
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise BenchError(
                f"plugin {owner}: {_HOOK_OF_KIND[kind]} registered {cls!r}, "
                f"which is not a subclass of benchharness.{base.__name__}"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise BenchError(f"plugin {owner}: {cls.__qualname__} has no `name`")
        existing = self.by_kind[kind].get(name)
        if existing is not None:
            raise BenchError(
                f"{kind} '{name}' is registered twice: by {existing.owner} "
                f"({existing.cls.__module__}.{existing.cls.__qualname__}) and by {owner} "
                f"({cls.__module__}.{cls.__qualname__})"
            )
        self.by_kind[kind][name] = Registered(cls, owner)

    def names(self, kind: str) -> list[str]:
        return sorted(self.by_kind[kind])

    def get(self, kind: str, name: str) -> Registered:
        try:
            return self.by_kind[kind][name]
        except KeyError:
            allowed = ", ".join(self.names(kind)) or "none registered"
            hint = ""
            if self.broken:
                hint = "; it may come from a plugin package that failed to load: " + "; ".join(
                    self.broken
                )
            raise BenchError(f"unknown {kind} '{name}' (known: {allowed}){hint}") from None

    def create(self, kind: str, name: str, options: dict[str, Any] | None = None) -> Any:
        """An instance of plugin ``name`` with ``options`` validated by its Options model."""
        cls = self.get(kind, name).cls
        return cls(cls.Options.model_validate(options or {}, context={"registry": self}))

    def from_table(self, kind: str, table: Mapping[str, Any]) -> Any:
        """An instance from a spec table: ``{"name": ..., **options}``.

        Tables that the spec loader has not validated (e.g. an optimizer table inside
        another plugin's options) fail here with a one-line BenchError.
        """
        options = {k: v for k, v in table.items() if k != "name"}
        name = table.get("name")
        if not isinstance(name, str):
            raise BenchError(f"{kind} table {dict(table)} has no `name`")
        try:
            return self.create(kind, name, options)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'options'} — "
                + e["msg"].removeprefix("Value error, ")
                for e in error.errors()
            )
            raise BenchError(f"{kind} '{name}': {problems}") from None


class PluginManager(pluggy.PluginManager):
    """A pluggy manager that also knows which distribution registered each entry-point
    plugin, and which entry points could not be loaded (one line each)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.distributions: dict[int, str] = {}  # id(plugin) → distribution name
        self.broken: list[str] = []


def plugin_manager(extra_plugins: Iterable[object] = ()) -> PluginManager:
    pm = PluginManager()
    pm.add_hookspecs(hookspecs)
    for module_name in BUILTIN_MODULES:
        pm.register(importlib.import_module(module_name), name=module_name)
    load_entry_points(pm)
    for plugin in extra_plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def load_entry_points(pm: PluginManager, group: str = ENTRY_POINT_GROUP) -> None:
    """Register every entry point of ``group``, one by one (in place of pluggy's
    ``load_setuptools_entrypoints``): one that fails to import or to register is recorded
    in ``pm.broken`` as one line, and the others are loaded all the same."""
    for dist in importlib.metadata.distributions():
        for ep in dist.entry_points:
            if ep.group != group or pm.get_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            package = dist.metadata["Name"] or "?"
            where = f"plugin package '{package}' (entry point {ep.name} = {ep.value})"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as error:  # a third party's bug must not break every command
                pm.broken.append(f"{where}: {_one_line(error)}")
                continue
            unknown = _unknown_hooks(pm, plugin)
            if unknown:
                pm.unregister(plugin)
                pm.broken.append(f"{where}: implements unknown hook(s) {', '.join(unknown)}")
                continue
            pm.distributions[id(plugin)] = package


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """The hooks ``plugin`` implements that have no spec (what ``check_pending`` rejects)."""
    return sorted(
        caller.name
        for caller in pm.get_hookcallers(plugin) or []
        if not caller.has_spec()
        and any(impl.plugin is plugin and not impl.optionalhook for impl in caller.get_hookimpls())
    )


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def build_registry(pm: pluggy.PluginManager) -> Registry:
    registry = Registry(broken=list(getattr(pm, "broken", [])))
    for kind, hook_name in _HOOK_OF_KIND.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            owner = _owner_name(pm, impl.plugin, impl.plugin_name)

            def register(cls: Any, _kind: str = kind, _owner: str = owner) -> None:
                registry.add(_kind, cls, _owner)

            impl.function(register=register)
    return registry


def _owner_name(pm: pluggy.PluginManager, plugin: object, plugin_name: str) -> str:
    package = getattr(pm, "distributions", {}).get(id(plugin))
    if package is not None:
        return f"{package} (entry point {plugin_name})"
    for p, dist in pm.list_plugin_distinfo():
        if p is plugin:
            return f"{dist.project_name} (entry point {plugin_name})"
    return plugin_name


@lru_cache(maxsize=1)
def _default_registry() -> Registry:
    return build_registry(plugin_manager())


def get_registry(extra_plugins: Iterable[object] = ()) -> Registry:
    """The registry of built-in and installed plugins, plus ``extra_plugins`` if given."""
    extra = tuple(extra_plugins)
    if not extra:
        return _default_registry()
    return build_registry(plugin_manager(extra))


def plugin_versions(registry: Registry, used: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``{"kind:name": version}`` for the plugins a job used (provenance)."""
    return {f"{k}:{n}": registry.get(k, n).version for k, n in used}
