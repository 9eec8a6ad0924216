"""Checking a spec's ``[[claims]]`` against its jobs: every key a claim matches on is a key
of some job, and its metric is one that a run can have."""

from __future__ import annotations

from typing import Any

from benchharness.keypaths import PathError, has_path, join_path, split_path
from benchharness.plugins import Registry
from benchharness.problems import Problems, unknown_key
from benchharness.records import METRIC_ALIASES, METRIC_COLUMNS
from benchharness.spec import Spec

__all__ = ["METRIC_ALIASES", "check_claims", "metric_problem"]

# Metrics stored in `extra` under a fixed name (runner.py): the scheme's reference time.
_EXTRA_METRICS = ("reference_seconds",)
# Prefixes of `extra` metrics besides plugin names: per-layer activation statistics.
_EXTRA_PREFIXES = ("act",)


def check_claims(
    spec: Spec,
    configs: list[tuple[dict[str, Any], dict[str, Any]]],
    registry: Registry,
    problems: Problems,
) -> None:
    """Report claims whose metric no run can have, or whose match keys no job has.

    ``configs`` are the spec's valid ``(config, axes)`` pairs (match keys are checked only
    when there is at least one)."""
    for i, claim in enumerate(spec.claims):
        why = metric_problem(claim["metric"], registry)
        if why is not None:
            problems.add(f"claims.{i}.metric", why)
        if not configs:
            continue
        for key in claim["match"]:
            if key == "seed" or any(key in axes for _, axes in configs):
                continue
            try:
                parts = split_path(key)
            except PathError as error:
                problems.add(f"claims.{i}.match.{join_path([key])}", str(error))
                continue
            if not any(has_path(config, parts) for config, _ in configs):
                problems.add(
                    f"claims.{i}.match.{join_path([key])}",
                    "matches no key of any job's configuration",
                )


def metric_problem(name: str, registry: Registry) -> str | None:
    """Why no run can have metric ``name``, or None if one can.

    Known: a stored metric column, a report alias, or an ``extra`` metric
    ``<plugin>.<key>`` of a registered plugin (compressors report theirs this way)."""
    columns = sorted({*METRIC_COLUMNS, *METRIC_ALIASES, *_EXTRA_METRICS})
    if name in columns:
        return None
    prefix, dot, key = name.partition(".")
    plugins = {n for kind in registry.by_kind for n in registry.names(kind)}
    if dot and key and (prefix in plugins or prefix in _EXTRA_PREFIXES):
        return None
    message = unknown_key(name, columns, "metric")
    if dot:
        message += f"; '{prefix}' is not a registered plugin, so '{name}' is no plugin metric"
    else:
        message += "; or a plugin's own metric, '<plugin>.<key>'"
    return message
