"""Loading a spec: a TOML file (plus ``--set`` overrides and ``--quick``) → :class:`Spec`.

A spec names one plugin per pipeline stage (``[dataset]``, ``[transform]``, ``[model]``,
``[optimizer]``, ``[compressor]``), the harness's own ``[data]`` and ``[measure]``
sections, a ``[matrix]`` of axes to sweep, ``[quick]`` overrides and ``[[claims]]``.
This module reads and checks the file's structure; :mod:`benchharness.matrix` expands the
matrix into jobs and validates every job against the plugins' ``Options``.

Problems are collected (:mod:`benchharness.problems`) and raised together as one
:class:`~benchharness.errors.BenchError`, one line per problem::

    specs/x.toml: transform.ratio — must be in (0, 1], got 1.5

Key paths are dotted (:mod:`benchharness.keypaths`).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchharness.errors import BenchError
from benchharness.keypaths import PathError, join_path, parse_override, render, set_path, split_path
from benchharness.problems import Problems, validate
from benchharness.spec_sections import (
    HARNESS_SECTIONS,
    Claim,
    DataOptions,
    MeasureOptions,
    ResourceOptions,
    RunOptions,
)

__all__ = [
    "CONFIG_SECTIONS",
    "HARNESS_SECTIONS",
    "Claim",
    "DataOptions",
    "MeasureOptions",
    "Spec",
    "load_spec",
    "read_spec",
]

# Sections of a job's configuration, in the order of the pipeline.
CONFIG_SECTIONS = (
    "dataset",
    "data",
    "transform",
    "model",
    "optimizer",
    "compressor",
    "compute",
    "measure",
)
# Sections that configure the spec itself rather than a job.
SPEC_SECTIONS = ("name", "description", "matrix", "quick", "claims", "run", "resources")
MATRIX_KEYWORDS = ("seeds", "include", "exclude")
# Deepest nesting of arrays and tables a spec may have (a real one needs about 6).
MAX_DEPTH = 32


# ----------------------------------------------------------------------------- spec
@dataclasses.dataclass(frozen=True)
class Spec:
    """A loaded spec: the document after ``--set`` and ``--quick``, and its matrix."""

    name: str
    path: Path
    source: str  # the path as the caller gave it: how messages name the file
    hash: str  # sha256 of the file bytes (+ overrides and the quick flag, if any)
    description: str
    document: dict[str, Any]
    axes: dict[str, list[Any]]  # dotted path → values, in spec order
    include: list[dict[str, Any]]
    exclude: list[dict[str, Any]]
    seeds: list[int]
    claims: list[dict[str, Any]]
    overrides: tuple[str, ...] = ()
    quick: bool = False
    run: dict[str, Any] = dataclasses.field(default_factory=dict)  # [run], validated
    resources: dict[str, Any] = dataclasses.field(default_factory=dict)  # [resources]

    @property
    def base(self) -> dict[str, Any]:
        """A copy of the job sections of the document (everything but matrix, claims...)."""
        return {k: copy.deepcopy(v) for k, v in self.document.items() if k not in SPEC_SECTIONS}


def load_spec(path: str | Path, *, overrides: Sequence[str] = (), quick: bool = False) -> Spec:
    """Read and check the spec at ``path``; raise :class:`BenchError` listing every problem.

    ``quick`` applies the ``[quick]`` overrides and keeps only the first seed; then
    ``overrides`` (``key=value`` strings from ``--set``) apply, so they win over both.
    Plugin options are checked when the matrix is expanded (:func:`matrix.load_jobs`).
    """
    spec, problems = read_spec(path, overrides=overrides, quick=quick)
    problems.raise_if_any()
    return spec


def read_spec(
    path: str | Path, *, overrides: Sequence[str] = (), quick: bool = False
) -> tuple[Spec, Problems]:
    """Like :func:`load_spec` but returns the problems instead of raising them.

    Only a missing or unparsable file raises, since there is no spec to return.
    """
    source = str(path)
    problems = Problems(source)
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise BenchError(f"{source}: no such file") from None
    except OSError as error:
        raise BenchError(f"{source}: cannot read: {error.strerror or error}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise BenchError(f"{source}: not UTF-8 text ({error.reason})") from None
    except tomllib.TOMLDecodeError as error:
        raise BenchError(f"{source}: TOML syntax error: {error}") from None
    except RecursionError:
        raise BenchError(
            f"{source}: arrays or tables nested too deep to read "
            f"(at most {MAX_DEPTH} levels are allowed)"
        ) from None
    deep = _too_deep(doc)
    if deep is not None:
        raise BenchError(f"{source}: {join_path(deep)}... — {_DEEP}")

    quick_table = doc.get("quick", {})
    if not isinstance(quick_table, dict):
        problems.add("quick", f"must be a table of key path = value, got {render(quick_table)}")
    elif quick:
        for key, value in quick_table.items():
            try:
                set_path(doc, split_path(key), copy.deepcopy(value))
            except PathError as error:
                problems.add(f"quick.{join_path([key])}", str(error))

    # --set comes last so that it wins over [quick] too.
    for text in overrides:
        try:
            parts, value = parse_override(text)
            if _too_deep(value) is not None:
                raise PathError(_DEEP)
            set_path(doc, parts, value)
        except PathError as error:
            problems.add(f"--set {_shorter(text)}", str(error))

    name = doc.get("name", file.stem)
    if not isinstance(name, str) or not name:
        problems.add("name", f"must be a non-empty string, got {render(name)}")
        name = file.stem
    description = doc.get("description", "")
    if not isinstance(description, str):
        problems.add("description", f"must be a string, got {render(description)}")
        description = ""

    axes, include, exclude, seeds = _read_matrix(doc.get("matrix", {}), problems)
    _check_axis_overrides(list(axes), overrides, problems)
    if quick:
        seeds = seeds[:1]

    return (
        Spec(
            name=name,
            path=file,
            source=source,
            hash=_spec_hash(raw, overrides, quick),
            description=description,
            document=doc,
            axes=axes,
            include=include,
            exclude=exclude,
            seeds=seeds,
            claims=_read_claims(doc.get("claims", []), problems),
            run=_read_run(doc.get("run", {}), problems),
            resources=_read_resources(doc.get("resources", {}), problems),
            overrides=tuple(overrides),
            quick=quick,
        ),
        problems,
    )


def _check_axis_overrides(
    axis_paths: Sequence[str], overrides: Sequence[str], problems: Problems
) -> None:
    """A ``--set`` of a matrix axis (or of a key inside a table-valued axis) would be
    overridden by the axis's values in every job: a problem, suggesting the axis."""
    axes = {}
    for path in axis_paths:
        try:
            axes[path] = split_path(path)
        except PathError:
            axes[path] = path.split(".")
    for text in overrides:
        try:
            parts, value = parse_override(text)
        except PathError:
            continue  # read_spec reported it
        for path, axis in axes.items():
            if parts[: len(axis)] != axis:
                continue
            matrix_key = join_path(["matrix", path])
            if len(parts) == len(axis):
                problems.add(
                    f"--set {text}",
                    f"{path} is a [matrix] axis, whose values would override this; "
                    f"set the axis instead: --set '{matrix_key}=[{render(value)}]'",
                )
            else:
                problems.add(
                    f"--set {text}",
                    f"{join_path(parts)} is inside the [matrix] axis {path}, whose tables "
                    f"replace {path} whole, so this would be ignored; set it in the axis's "
                    f"tables instead (--set '{matrix_key}=[...]')",
                )
            break


_DEEP = f"arrays or tables nested more than {MAX_DEPTH} levels deep"


def _too_deep(value: Any) -> list[str] | None:
    """The first key path (a few levels of it) where ``value`` nests arrays/tables more
    than :data:`MAX_DEPTH` deep, else None: deeper is never a sensible spec, and would
    overflow recursive code further on."""
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if len(path) > MAX_DEPTH:
            return path[:3]
        if isinstance(node, dict):
            stack.extend((v, [*path, str(k)]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, [*path, str(i)]) for i, v in enumerate(node))
    return None


def _shorter(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _spec_hash(raw: bytes, overrides: Sequence[str], quick: bool) -> str:
    digest = hashlib.sha256(raw)
    if overrides or quick:
        extra = {"overrides": list(overrides), "quick": quick}
        digest.update(b"\0" + json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()


def _read_matrix(
    matrix: Any, problems: Problems
) -> tuple[dict[str, list[Any]], list[dict[str, Any]], list[dict[str, Any]], list[int]]:
    axes: dict[str, list[Any]] = {}
    if not isinstance(matrix, dict):
        problems.add("matrix", f"must be a table, got {render(matrix)}")
        return axes, [], [], [0]

    seeds = matrix.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        problems.add("matrix.seeds", f"must be a non-empty array of integers, got {render(seeds)}")
        seeds = [0]

    tables = {}
    for keyword in ("include", "exclude"):
        entries = matrix.get(keyword, [])
        if not isinstance(entries, list):
            problems.add(f"matrix.{keyword}", f"must be an array of tables, got {render(entries)}")
            entries = []
        good = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not entry:
                problems.add(
                    f"matrix.{keyword}.{i}",
                    f"must be a table of key path = value, got {render(entry)}",
                )
            else:
                good.append(entry)
        tables[keyword] = good

    # `model.width = [...]` written unquoted is a nested table: flatten it to its path
    def collect(table: dict[str, Any], prefix: list[str]) -> None:
        for key, values in table.items():
            if not prefix and key in MATRIX_KEYWORDS:
                continue
            try:
                parts = [*prefix, *split_path(key)]
            except PathError as error:
                problems.add(f"matrix.{join_path([key])}", str(error))
                continue
            if isinstance(values, dict):
                collect(values, parts)
                continue
            path = ".".join(parts)
            label = f"matrix.{join_path([path])}"
            if not isinstance(values, list):
                problems.add(label, f"must be an array of values, got {render(values)}")
            elif not values:
                problems.add(label, "must be a non-empty array of values")
            else:
                axes[path] = values

    collect(matrix, [])
    return axes, tables["include"], tables["exclude"], seeds


def _read_claims(claims: Any, problems: Problems) -> list[dict[str, Any]]:
    if isinstance(claims, dict):
        claims = [claims]
    if not isinstance(claims, list):
        problems.add("claims", f"must be an array of tables ([[claims]]), got {render(claims)}")
        return []
    out = []
    for i, claim in enumerate(claims):
        valid = validate(problems, f"claims.{i}", Claim, claim, what="a claim")
        if valid is not None:
            out.append(valid.model_dump(mode="json"))
    return out


def _read_run(table: Any, problems: Problems) -> dict[str, Any]:
    valid = validate(problems, "run", RunOptions, table, what="[run]")
    return {} if valid is None else valid.model_dump(mode="json")


def _read_resources(table: Any, problems: Problems) -> dict[str, Any]:
    valid = validate(problems, "resources", ResourceOptions, table, what="[resources]")
    return {} if valid is None else valid.model_dump(mode="json")
