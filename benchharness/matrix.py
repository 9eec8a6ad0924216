"""Expanding a spec's matrix into jobs, each a fully resolved, validated configuration.

The jobs of a spec are the cartesian product of its axes (in spec order), minus the
combinations an ``exclude`` entry matches, plus one configuration per ``include`` entry,
each times every seed. Every job's configuration is validated — plugin tables against the
plugin's ``Options``, ``[data]``/``[measure]`` against the harness's models — and resolved
with every default filled in, so that equal configurations get equal ids however they
were written. Identical jobs are kept once.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchharness.errors import BenchError
from benchharness.keypaths import (
    PathError,
    get_path,
    has_path,
    join_path,
    render,
    set_path,
    short,
    split_path,
)
from benchharness.plugins import KINDS, Registry
from benchharness.problems import Problems, unknown_key, validate
from benchharness.spec import CONFIG_SECTIONS, HARNESS_SECTIONS, Spec, read_spec

__all__ = ["Job", "describe_job", "digest", "expand", "load_jobs", "resolve_config"]

_MULTI_SECTIONS = ("transform", "compressor")  # a table or an array of tables
_REQUIRED_SECTIONS = ("dataset", "model", "optimizer")


@dataclasses.dataclass(frozen=True)
class Job:
    """One run: a resolved configuration and a seed."""

    id: str  # hash of {"spec": spec_name, "config": config}
    config_id: str  # the same without the seed: groups a configuration's seeds
    config: dict[str, Any]  # resolved: dataset, data, transform, model, optimizer, ...
    axes: dict[str, Any]  # this job's value of each matrix axis (and include key)
    seed: int
    spec_name: str
    spec_hash: str
    quick: bool


def load_jobs(
    path: str | Path,
    registry: Registry,
    *,
    overrides: Sequence[str] = (),
    quick: bool = False,
) -> tuple[Spec, list[Job]]:
    """Load the spec at ``path`` and expand it: the one call behind ``bench run``.

    Raises one :class:`BenchError` listing every problem of the file and of every job.
    """
    spec, problems = read_spec(path, overrides=overrides, quick=quick)
    jobs = _expand(spec, registry, problems)
    problems.raise_if_any()
    return spec, jobs


def expand(spec: Spec, registry: Registry) -> list[Job]:
    """The validated jobs of ``spec``; :class:`BenchError` listing every problem if any."""
    problems = Problems(spec.source)
    jobs = _expand(spec, registry, problems)
    problems.raise_if_any()
    return jobs


def describe_job(job: Job) -> str:
    """One line for ``bench run --dry-run``: id, seed and the job's axis values."""
    parts = [job.id, f"seed={job.seed}"]
    parts += [f"{path}={short(value)}" for path, value in job.axes.items()]
    if job.quick:
        parts.append("(quick)")
    return "  ".join(parts)


# ------------------------------------------------------------------------ expansion
def _expand(spec: Spec, registry: Registry, problems: Problems) -> list[Job]:
    base = spec.base
    axes = _checked_axes(spec, base, registry, problems)
    exclude = _checked_exclude(spec, axes, problems)

    # (document, {axis or include key: value}) of each configuration, before seeds
    points: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for combo in itertools.product(*axes.values()):
        chosen = dict(zip(axes, combo, strict=True))
        if any(_matches(entry, chosen, axes) for entry in exclude):
            continue
        doc = _apply(base, chosen, "matrix", problems)
        if doc is not None:
            points.append((doc, chosen))
    for i, entry in enumerate(spec.include):
        doc = _apply(base, entry, f"matrix.include.{i}", problems)
        if doc is not None:
            points.append((doc, {**dict.fromkeys(axes), **entry}))

    jobs: list[Job] = []
    seen: set[str] = set()
    for doc, named in points:
        job_problems = Problems(spec.source)
        config = resolve_config(doc, registry, job_problems)
        if job_problems:
            problems.extend(job_problems)
            continue
        job_axes = {path: _resolved_value(config, path, raw) for path, raw in named.items()}
        for seed in spec.seeds:
            job = _make_job(spec, {**config, "seed": seed}, job_axes, seed)
            if job.id not in seen:
                seen.add(job.id)
                jobs.append(job)
    _check_claims(spec, jobs, problems)
    return jobs


def _checked_axes(
    spec: Spec, base: dict[str, Any], registry: Registry, problems: Problems
) -> dict[str, list[Any]]:
    """The axes that set tables or whose path is a key (or a defaulted option) of the base."""
    good = {}
    for path, values in spec.axes.items():
        parts = split_path(path)
        if (
            all(isinstance(v, dict | list) for v in values)
            or has_path(base, parts)
            or parts[-1] in _option_names(base, registry, parts[:-1])
        ):
            good[path] = values
        else:
            problems.add(f"matrix.{join_path([path])}", _missing_key(base, registry, parts))
    return good


def _option_names(base: dict[str, Any], registry: Registry, parent: list[str]) -> set[str]:
    """The keys the table at ``parent`` accepts according to its plugin's or section's model."""
    if not parent:
        return set(CONFIG_SECTIONS)
    section = parent[0]
    if len(parent) == 1 and section in HARNESS_SECTIONS:
        return set(HARNESS_SECTIONS[section].model_fields)
    is_table = len(parent) == 1 or (
        len(parent) == 2 and section in _MULTI_SECTIONS and parent[1].isdigit()
    )
    table = get_path(base, parent) if is_table and has_path(base, parent) else None
    name = table.get("name") if isinstance(table, dict) else None
    if section in KINDS and isinstance(name, str) and name in registry.names(section):
        return {"name", *registry.get(section, name).cls.Options.model_fields}
    return set()


def _missing_key(base: dict[str, Any], registry: Registry, parts: list[str]) -> str:
    """Why ``parts`` is not a key of the spec, suggesting the closest existing key."""
    for depth in range(len(parts) - 1, -1, -1):
        prefix = parts[:depth]
        known = _option_names(base, registry, prefix)
        if has_path(base, prefix):
            node = get_path(base, prefix)
            if not isinstance(node, dict):
                try:
                    get_path(base, parts)
                except PathError as error:
                    return str(error)
            known |= set(node)
        elif not known:
            continue
        where = join_path(prefix) if prefix else "the spec"
        return unknown_key(parts[depth], known, f"key of {where}")
    return "no such key"


def _checked_exclude(
    spec: Spec, axes: dict[str, list[Any]], problems: Problems
) -> list[dict[str, Any]]:
    """Exclude entries whose keys are all axes (or paths inside a table-valued axis)."""
    good = []
    for i, entry in enumerate(spec.exclude):
        bad = [key for key in entry if _axis_of(key, axes) is None]
        for key in bad:
            label = f"matrix.exclude.{i}.{join_path([key])}"
            problems.add(label, unknown_key(key, axes, "matrix axis"))
        if not bad:
            good.append(entry)
    return good


def _axis_of(key: str, axes: dict[str, list[Any]]) -> str | None:
    if key in axes:
        return key
    for axis in axes:
        if key.startswith(axis + ".") and all(isinstance(v, dict | list) for v in axes[axis]):
            return axis
    return None


def _matches(entry: dict[str, Any], chosen: dict[str, Any], axes: dict[str, list[Any]]) -> bool:
    """Whether an exclude entry matches a combination: every key equals its value."""
    for key, wanted in entry.items():
        axis = _axis_of(key, axes)
        if axis is None:
            return False
        value = chosen[axis]
        if key != axis:
            try:
                value = get_path(value, split_path(key[len(axis) + 1 :]))
            except PathError:
                return False
        if not _same(value, wanted):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    """Equality of TOML values where 1 == 1.0 but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _apply(
    base: dict[str, Any], values: dict[str, Any], where: str, problems: Problems
) -> dict[str, Any] | None:
    """A copy of ``base`` with each dotted path of ``values`` set (tables replace)."""
    doc = copy.deepcopy(base)
    ok = True
    for path, value in values.items():
        try:
            set_path(doc, split_path(path), copy.deepcopy(value))
        except PathError as error:
            problems.add(f"{where}.{join_path([path])}", str(error))
            ok = False
    return doc if ok else None


def _resolved_value(config: dict[str, Any], path: str, raw: Any) -> Any:
    """The value at ``path`` in the resolved config (defaults filled), else ``raw``.

    A table or array value stays as written (``{name = "quantize", k = 2}``): the
    resolved form is in the config, and the written one reads better in reports.
    """
    if isinstance(raw, dict | list):
        return json.loads(json.dumps(raw, default=str))
    try:
        return get_path(config, split_path(path))
    except PathError:
        return json.loads(json.dumps(raw, default=str))


def digest(value: Any) -> str:
    """First 16 hex digits of the sha256 of ``value``'s canonical JSON (sorted, compact)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(spec_name: str, config: dict[str, Any]) -> str:
    return digest({"spec": spec_name, "config": config})


def _make_job(spec: Spec, config: dict[str, Any], axes: dict[str, Any], seed: int) -> Job:
    without_seed = {k: v for k, v in config.items() if k != "seed"}
    return Job(
        id=_digest(spec.name, config),
        config_id=_digest(spec.name, without_seed),
        config=config,
        axes=axes,
        seed=seed,
        spec_name=spec.name,
        spec_hash=spec.hash,
        quick=spec.quick,
    )


def _check_claims(spec: Spec, jobs: list[Job], problems: Problems) -> None:
    """Every key a claim matches on must be a key of some job (or its axes, or seed)."""
    if not jobs:
        return
    for i, claim in enumerate(spec.claims):
        for key in claim["match"]:
            if key == "seed" or any(key in job.axes for job in jobs):
                continue
            try:
                parts = split_path(key)
            except PathError as error:
                problems.add(f"claims.{i}.match.{join_path([key])}", str(error))
                continue
            if not any(has_path(job.config, parts) for job in jobs):
                problems.add(
                    f"claims.{i}.match.{join_path([key])}",
                    "matches no key of any job's configuration",
                )


# ----------------------------------------------------------------------- resolution
def resolve_config(doc: dict[str, Any], registry: Registry, problems: Problems) -> dict[str, Any]:
    """The resolved configuration of one job document (without the seed).

    Plugin tables become ``{"name": ..., **options}`` with every default filled in;
    ``transform``/``compressor`` stay a table or an array as written (absent → ``[]``).
    Sections that fail validation are reported to ``problems`` and left out.
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
            if valid is not None:
                config[section] = valid.model_dump(mode="json")
        elif value is None and section in _MULTI_SECTIONS:
            config[section] = []
        elif value is None:
            known = ", ".join(registry.names(section)) or "none registered"
            problems.add(section, f"missing: the spec needs a [{section}] table; known: {known}")
        elif isinstance(value, list) and section in _MULTI_SECTIONS:
            tables = [
                _plugin_table(section, table, f"{section}.{i}", registry, problems)
                for i, table in enumerate(value)
            ]
            if all(t is not None for t in tables):
                config[section] = tables
        else:
            table = _plugin_table(section, value, section, registry, problems)
            if table is not None:
                config[section] = table
    return config


def _plugin_table(
    kind: str, table: Any, key: str, registry: Registry, problems: Problems
) -> dict[str, Any] | None:
    """``{"name": name, **options}`` validated against the plugin's Options."""
    if not isinstance(table, dict):
        shape = "a table or an array of tables" if kind in _MULTI_SECTIONS else "a table"
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
    valid = validate(
        problems, key, cls.Options, options, what=f"{kind} '{name}'", context={"registry": registry}
    )
    if valid is None:
        return None
    return {"name": name, **valid.model_dump(mode="json")}
