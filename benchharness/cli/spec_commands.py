"""`bench validate` and `bench plugins`: specs and plugins, nothing run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from benchharness.errors import BenchError

if TYPE_CHECKING:
    from benchharness.matrix import Plan
    from benchharness.plugins import Registry

from benchharness.cli.common import (
    QuickOption,
    SetOption,
    YesOption,
    handles_errors,
    registry,
)


@handles_errors
def validate(
    spec: Annotated[Path, typer.Argument(help="the study's TOML spec")],
    set_: SetOption = None,
    quick: QuickOption = False,
    yes: YesOption = False,
) -> None:
    """Check a spec (every expanded job, at full and at --quick scale) without running anything."""
    plan = plan_spec(spec, set_, quick, yes, registry())
    typer.echo(f"{spec}: ok — {len(plan)} jobs ({len(plan.configs)} configurations × seeds)")


def plan_spec(
    spec: Path, set_: list[str] | None, quick: bool, yes: bool, plugin_registry: Registry
) -> Plan:
    """The spec's validated plan; a matrix over LARGE_MATRIX jobs needs --yes or a "y"."""
    from benchharness.matrix import LARGE_MATRIX, MatrixTooLarge, plan_jobs

    try:
        return plan_jobs(
            spec,
            plugin_registry,
            overrides=set_ or (),
            quick=quick,
            max_jobs=None if yes else LARGE_MATRIX,
        )
    except MatrixTooLarge as error:
        if not sys.stdin.isatty():
            raise BenchError(f"{error}; pass --yes to expand it anyway") from None
        if not typer.confirm(f"{error}. Expand it?", err=True):
            raise BenchError(f"{error}; not confirmed") from None
    return plan_jobs(spec, plugin_registry, overrides=set_ or (), quick=quick)


@handles_errors
def plugins(
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="only this kind (dataset, transform, model, optimizer, compressor)"
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json")] = "table",
) -> None:
    """List every plugin by kind, with its parameters, defaults and descriptions."""
    from benchharness.plugin_listing import describe_plugins, render_plugins
    from benchharness.plugins import KINDS

    if kind is not None and kind not in KINDS:
        raise BenchError(f"--kind: unknown kind '{kind}' (known: {', '.join(KINDS)})")
    if fmt not in ("table", "json"):
        raise BenchError(f"--format: must be table or json, got '{fmt}'")
    listing = describe_plugins(registry(), kind)
    if fmt == "json":
        typer.echo(json.dumps(listing, indent=2))
    else:
        render_plugins(listing, sys.stdout)
