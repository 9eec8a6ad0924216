"""Resolving one job's document into its configuration: every plugin table validated
against its plugin's ``Options`` (nested plugin tables too, see
:mod:`benchharness.plugin_tables`), the harness sections against theirs, defaults filled.
"""

from __future__ import annotations

from typing import Any

from benchharness.errors import BenchError
from benchharness.keypaths import join_path, render
from benchharness.plugin_tables import plugin_table_fields
from benchharness.plugins import Registry
from benchharness.problems import Problems, unknown_key, validate
from benchharness.spec import CONFIG_SECTIONS, HARNESS_SECTIONS
from benchharness.spec_sections import LATER_SECTIONS

__all__ = ["MULTI_SECTIONS", "resolve_config"]

MULTI_SECTIONS = ("transform", "compressor")  # a table or an array of tables


def resolve_config(doc: dict[str, Any], registry: Registry, problems: Problems) -> dict[str, Any]:
    """The resolved configuration of one job document (without the seed).

    Plugin tables become ``{"name": ..., **options}`` with every default filled in;
    ``transform``/``compressor`` stay a table or an array as written (absent → ``[]``).
    Plugin tables nested in options are validated and kept as written (so that job ids
    do not depend on their plugins' defaults). Sections that fail validation are
    reported to ``problems`` and left out.
    """
    for key in doc:
        if key not in CONFIG_SECTIONS:
            problems.add(join_path([key]), unknown_key(key, CONFIG_SECTIONS, "section"))
    config: dict[str, Any] = {}
    for section in CONFIG_SECTIONS:
        value = doc.get(section)
        if section in HARNESS_SECTIONS:
            model = HARNESS_SECTIONS[section]
            data = {} if value is None else value
            valid = validate(problems, section, model, data, what=f"[{section}]")
            dumped = None if valid is None else valid.model_dump(mode="json")
            if dumped is not None and (dumped or section not in LATER_SECTIONS):
                config[section] = dumped
        elif value is None and section in MULTI_SECTIONS:
            config[section] = []
        elif value is None:
            known = ", ".join(registry.names(section)) or "none registered"
            problems.add(section, f"missing: the spec needs a [{section}] table; known: {known}")
        elif isinstance(value, list) and section in MULTI_SECTIONS:
            tables = [
                plugin_table(section, table, f"{section}.{i}", registry, problems)
                for i, table in enumerate(value)
            ]
            if all(t is not None for t in tables):
                config[section] = tables
        else:
            table = plugin_table(section, value, section, registry, problems)
            if table is not None:
                config[section] = table
    return config


def plugin_table(
    kind: str, table: Any, key: str, registry: Registry, problems: Problems
) -> dict[str, Any] | None:
    """``{"name": name, **options}`` validated against the plugin's Options, the plugin
    tables nested in its options included; None after reporting the problems."""
    if not isinstance(table, dict):
        shape = "a table or an array of tables" if kind in MULTI_SECTIONS else "a table"
        problems.add(key, f"must be {shape} with a `name`, got {render(table)}")
        return None
    name = table.get("name")
    if name is None:
        known = ", ".join(registry.names(kind)) or "none registered"
        problems.add(f"{key}.name", f"missing: which {kind}? known: {known}")
        return None
    if not isinstance(name, str):
        problems.add(f"{key}.name", f"must be a string, got {render(name)}")
        return None
    try:
        cls = registry.get(kind, name).cls
    except BenchError as error:
        problems.add(f"{key}.name", str(error))
        return None
    options = {k: v for k, v in table.items() if k != "name"}
    nested_bad = _check_nested(cls.Options, options, key, registry, problems)
    valid = validate(
        problems,
        key,
        cls.Options,
        options,
        what=f"{kind} '{name}'",
        context={"registry": registry},
        reported=nested_bad,
    )
    if valid is None or nested_bad:
        return None
    return {"name": name, **valid.model_dump(mode="json")}


def _check_nested(
    options_model: Any, options: dict[str, Any], key: str, registry: Registry, problems: Problems
) -> set[str]:
    """Validate the plugin tables in ``options`` (fields marked ``PluginTable``) like
    top-level ones; the names of the fields that had problems (reported with full paths)."""
    bad = set()
    for field, marker in plugin_table_fields(options_model).items():
        if field not in options:
            continue  # the default: the plugin's own business
        value = options[field]
        where = f"{key}.{join_path([field])}"
        found = Problems(problems.source)
        if not marker.many:
            plugin_table(marker.kind, value, where, registry, found)
        elif isinstance(value, list):
            for i, table in enumerate(value):
                plugin_table(marker.kind, table, f"{where}.{i}", registry, found)
        if found:
            problems.extend(found)
            bad.add(field)
    return bad
