"""`bench plugins`: every registered plugin with its parameters, from its Options model."""

from __future__ import annotations

import shutil
import textwrap
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


_HEADERS = ("name", "summary", "parameters (default) — description")
_MIN_WIDTH = 120  # narrower, the descriptions would wrap into slivers
_RULES = 10  # what the grid adds to 3 cells: 4 rules, and a blank either side of each


def render_plugins(listing: dict[str, list[dict[str, Any]]], stream: TextIO) -> None:
    """One table per kind (``--format table``) under its title, as wide as the terminal
    ($COLUMNS first) but at least 120 columns: plain text from tabulate, in cells
    wrapped by textwrap (rich took ~5× as long, and its markup ate ``[float]`` from types)."""
    width = max(shutil.get_terminal_size((_MIN_WIDTH, 24)).columns, _MIN_WIDTH)
    for kind, entries in listing.items():
        stream.write(f"{kind}s\n{_table([_cells(entry) for entry in entries], width)}\n")


def _cells(entry: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """The lines of one plugin's name, summary and parameters cells, before wrapping."""
    aware = ["data-aware"] if entry.get("data_aware") else []
    name = [entry["name"], f"v{entry['version']}", *aware]
    params = [
        f"{o['name']}: {o['type']} = {_shown_default(o)} — {o['description']}"
        for o in entry["options"]
    ]
    return name, [entry["summary"], entry["owner"]], params


def _table(cells: list[tuple[list[str], list[str], list[str]]], width: int) -> str:
    """Names unwrapped; the summary and parameters columns share the rest of ``width``
    half and half, the summary's unused part going to the parameters."""
    from tabulate import tabulate

    # tabulate makes a column at least 2 wider than its header
    name_width = max([len(_HEADERS[0]) + 2] + [len(line) for c in cells for line in c[0]])
    free = max(width - name_width - _RULES, 2 * len(_HEADERS[2]))
    summary_width = min(free // 2, max((len(line) for c in cells for line in c[1]), default=1))
    rows = [
        ["\n".join(name), _wrapped(summary, summary_width), _wrapped(params, free - summary_width)]
        for name, summary, params in cells
    ]
    return tabulate(rows, headers=_HEADERS, tablefmt="mixed_grid", disable_numparse=True)


def _wrapped(lines: list[str], width: int) -> str:
    """One cell: each of ``lines`` wrapped at ``width``, a word longer than that folded."""
    wrapped = (textwrap.wrap(line, width, break_on_hyphens=False) or [""] for line in lines)
    return "\n".join(part for parts in wrapped for part in parts)
