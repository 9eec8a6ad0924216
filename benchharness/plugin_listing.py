"""`bench plugins`: every registered plugin with its parameters, from its Options model."""

from __future__ import annotations

from typing import Any, Literal, TextIO, get_args, get_origin

from pydantic_core import PydanticUndefined

from benchharness.plugins import KINDS, Registry


def _default(field: Any) -> Any:
    if field.default is not PydanticUndefined:
        return field.default
    if field.default_factory is not None:
        return field.default_factory()
    return None


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_plugins(
    registry: Registry, kind: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """``{kind: [{name, version, owner, summary, options: [option, ...]}]}`` where an option
    is ``{name, type, default, required, description}``; compressors also say whether they
    are ``data_aware`` (post-training only, with calibration data)."""
    listing: dict[str, list[dict[str, Any]]] = {}
    for k in [kind] if kind else list(KINDS):
        entries = []
        for name in registry.names(k):
            reg = registry.get(k, name)
            options = []
            for field_name, field in reg.cls.Options.model_fields.items():
                options.append(
                    {
                        "name": field_name,
                        "type": _type_name(field.annotation),
                        "default": _default(field),
                        "required": field.is_required(),
                        "description": field.description or "",
                    }
                )
            entry = {
                "name": name,
                "version": reg.version,
                "owner": reg.owner,
                "summary": reg.cls.summary(),
                "options": options,
            }
            if k == "compressor":
                entry["data_aware"] = bool(getattr(reg.cls, "data_aware", False))
            entries.append(entry)
        listing[k] = entries
    return listing


def _shown_default(option: dict[str, Any]) -> str:
    return "<required>" if option["required"] else repr(option["default"])


def render_plugins(listing: dict[str, list[dict[str, Any]]], stream: TextIO) -> None:
    """One rich table per kind (``--format table``); rich is imported here, so that
    ``--format json`` does without it."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream, width=max(Console(file=stream).width, 120))
    for kind, entries in listing.items():
        table = Table(title=f"{kind}s", title_justify="left", show_lines=True)
        for column in ("name", "summary", "parameters (default) — description"):
            table.add_column(column, overflow="fold")
        for entry in entries:
            params = "\n".join(
                f"{o['name']}: {o['type']} = {_shown_default(o)} — {o['description']}"
                for o in entry["options"]
            )
            aware = "\n[italic]data-aware[/italic]" if entry.get("data_aware") else ""
            table.add_row(
                f"{entry['name']}\nv{entry['version']}{aware}",
                f"{entry['summary']}\n[dim]{entry['owner']}[/dim]",
                params,
            )
        console.print(table)
