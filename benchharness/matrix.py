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
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from benchharness.claims import check_claims
from benchharness.errors import BenchError
from benchharness.keypaths import (
    PathError,
    get_path,
    has_path,
    join_path,
    set_path,
    short,
    split_path,
)
from benchharness.plugins import KINDS, Registry
from benchharness.problems import Problems, unknown_key
from benchharness.resolve import MULTI_SECTIONS, resolve_config
from benchharness.spec import CONFIG_SECTIONS, HARNESS_SECTIONS, Spec, read_spec

__all__ = [
    "LARGE_MATRIX",
    "Job",
    "MatrixTooLarge",
    "Plan",
    "describe_job",
    "digest",
    "expand",
    "job_bound",
    "load_jobs",
    "plan_jobs",
    "resolve_config",
]

_REQUIRED_SECTIONS = ("dataset", "model", "optimizer")
# Matrices that could expand to more jobs than this need confirmation (`--yes`).
LARGE_MATRIX = 10_000


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
    max_jobs: int | None = None,
) -> tuple[Spec, list[Job]]:
    """Load the spec at ``path`` and expand it: the one call behind ``bench run``.

    Raises one :class:`BenchError` listing every problem of the file and of every job,
    or :class:`MatrixTooLarge` before expanding anything if the matrix could have more
    than ``max_jobs`` jobs.
    """
    plan = plan_jobs(path, registry, overrides=overrides, quick=quick, max_jobs=max_jobs)
    return plan.spec, list(plan.jobs())


def plan_jobs(
    path: str | Path,
    registry: Registry,
    *,
    overrides: Sequence[str] = (),
    quick: bool = False,
    max_jobs: int | None = None,
) -> Plan:
    """Load the spec at ``path`` and validate every configuration of its matrix, without
    making the jobs (configurations × seeds) yet: :meth:`Plan.jobs` makes them one by one.

    Without ``quick``, the spec's ``[quick]`` version is validated too, so that a typo
    there is found now rather than at the first ``--quick`` run. Raises as
    :func:`load_jobs`.
    """
    spec, problems = read_spec(path, overrides=overrides, quick=quick)
    bound = job_bound(spec)
    if max_jobs is not None and bound > max_jobs:
        problems.raise_if_any()
        raise MatrixTooLarge(
            f"{spec.source}: matrix — expands to up to {bound:,} jobs (over {max_jobs:,})",
            bound,
        )
    configs = _configs(spec, registry, problems)
    if not quick and isinstance(spec.document.get("quick"), dict) and spec.document["quick"]:
        quick_spec, quick_problems = read_spec(path, overrides=overrides, quick=True)
        _configs(quick_spec, registry, quick_problems)
        for line in quick_problems.lines:
            if line not in problems.lines:
                problems.lines.append(f"{line} (with --quick)")
    problems.raise_if_any()
    return Plan(spec, configs)


class MatrixTooLarge(BenchError):
    """The matrix could expand to more jobs than allowed without confirmation."""

    def __init__(self, message: str, jobs: int):
        super().__init__(message)
        self.jobs = jobs


def job_bound(spec: Spec) -> int:
    """An upper bound of the number of jobs of ``spec``, computed without expanding it:
    (the product of the axes' lengths + the includes) × the distinct seeds."""
    return (math.prod(len(v) for v in spec.axes.values()) + len(spec.include)) * len(
        set(spec.seeds)
    )


@dataclasses.dataclass(frozen=True)
class Plan:
    """A spec's validated configurations, each ``(config, axes)``; jobs are made lazily."""

    spec: Spec
    configs: list[tuple[dict[str, Any], dict[str, Any]]]

    @property
    def seeds(self) -> list[int]:
        return list(dict.fromkeys(self.spec.seeds))

    def __len__(self) -> int:
        """The number of jobs: configurations × distinct seeds (jobs ids are unique)."""
        return len(self.configs) * len(self.seeds)

    def jobs(self) -> Iterator[Job]:
        """Every job, in order: each configuration with each seed."""
        for config, job_axes in self.configs:
            for seed in self.seeds:
                yield _make_job(self.spec, {**config, "seed": seed}, job_axes, seed)


def expand(spec: Spec, registry: Registry) -> list[Job]:
    """The validated jobs of ``spec``; :class:`BenchError` listing every problem if any."""
    problems = Problems(spec.source)
    plan = Plan(spec, _configs(spec, registry, problems))
    problems.raise_if_any()
    return list(plan.jobs())


def describe_job(job: Job) -> str:
    """One line for ``bench run --dry-run``: id, seed and the job's axis values."""
    parts = [job.id, f"seed={job.seed}"]
    parts += [f"{path}={short(value)}" for path, value in job.axes.items()]
    if job.quick:
        parts.append("(quick)")
    return "  ".join(parts)


# ------------------------------------------------------------------------ expansion
def _configs(
    spec: Spec, registry: Registry, problems: Problems
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every distinct valid configuration of ``spec`` with its axis values, in order;
    the problems of the others go to ``problems``. Documents are made one at a time."""
    base = spec.base
    axes = _checked_axes(spec, base, registry, problems)
    exclude = _checked_exclude(spec, axes, problems)

    def points() -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(document, {axis or include key: value}) of each configuration."""
        for combo in itertools.product(*axes.values()):
            chosen = dict(zip(axes, combo, strict=True))
            if any(_matches(entry, chosen, axes) for entry in exclude):
                continue
            doc = _apply(base, chosen, "matrix", problems)
            if doc is not None:
                yield doc, chosen
        for i, entry in enumerate(spec.include):
            doc = _apply(base, entry, f"matrix.include.{i}", problems)
            if doc is not None:
                yield doc, {**dict.fromkeys(axes), **entry}

    configs = []
    seen: set[str] = set()
    for doc, named in points():
        job_problems = Problems(spec.source)
        config = resolve_config(doc, registry, job_problems)
        if job_problems:
            problems.extend(job_problems)
            continue
        config_id = digest(config)
        if config_id in seen:
            continue
        seen.add(config_id)
        job_axes = {path: _resolved_value(config, path, raw) for path, raw in named.items()}
        configs.append((config, job_axes))
    check_claims(spec, configs, registry, problems)
    return configs


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
        len(parent) == 2 and section in MULTI_SECTIONS and parent[1].isdigit()
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
