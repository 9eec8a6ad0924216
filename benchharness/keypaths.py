"""Dotted key paths into a spec document: ``transform.0.ratio``, ``matrix."model.width"``.

An integer segment indexes an array; a segment may be quoted. Setting a path to a table
or an array replaces that whole subtree.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "PathError",
    "get_path",
    "has_path",
    "join_path",
    "parse_override",
    "render",
    "set_path",
    "short",
    "split_path",
]


class PathError(ValueError):
    """A key path that cannot be parsed, read or written; the message says why."""


_SEGMENT = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(\.|$)""")


def split_path(key: str) -> list[str]:
    """``'transform.0.ratio'`` → ``['transform', '0', 'ratio']``; segments may be quoted."""
    parts: list[str] = []
    pos = 0
    while pos < len(key):
        m = _SEGMENT.match(key, pos)
        if not m:
            raise PathError(f"not a valid key path: {key!r}")
        parts.append(next(g for g in m.groups()[:3] if g is not None))
        pos = m.end()
        if m.group(4) == "" and pos < len(key):
            raise PathError(f"not a valid key path: {key!r}")
        if m.group(4) == "." and pos == len(key):
            raise PathError(f"not a valid key path: {key!r}")
    if not parts:
        raise PathError("empty key path")
    return parts


def join_path(parts: Iterable[str | int]) -> str:
    """The inverse of :func:`split_path`, quoting segments that need it."""
    out = []
    for part in parts:
        text = str(part)
        out.append(text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text))
    return ".".join(out)


def _step(node: Any, part: str, where: list[str]) -> tuple[Any, Any]:
    """(container, key) for one segment, raising PathError if ``node`` cannot hold it."""
    here = join_path(where) or "the spec"
    if isinstance(node, dict):
        return node, part
    if isinstance(node, list):
        if not part.isdigit():
            raise PathError(f"{here} is an array: index it, e.g. {join_path([*where, 0, part])}")
        index = int(part)
        if index >= len(node):
            raise PathError(f"{here} has {len(node)} element(s), no index {index}")
        return node, index
    raise PathError(f"{here} is {render(node)}, not a table")


def get_path(doc: Any, parts: Sequence[str]) -> Any:
    """The value at ``parts`` in ``doc``; PathError if there is none."""
    node = doc
    for i, part in enumerate(parts):
        container, key = _step(node, part, list(parts[:i]))
        if isinstance(container, dict) and key not in container:
            raise PathError(_no_key(parts[:i], key))
        node = container[key]
    return node


def set_path(doc: dict[str, Any], parts: Sequence[str], value: Any) -> None:
    """Set ``parts`` in ``doc`` to ``value``, creating missing tables on the way.

    A table or array value replaces the whole subtree.
    """
    node: Any = doc
    for i, part in enumerate(parts):
        container, key = _step(node, part, list(parts[:i]))
        if i == len(parts) - 1:
            container[key] = value
        else:
            if isinstance(container, dict) and key not in container:
                if key.isdigit():
                    raise PathError(_no_key(parts[:i], key))
                container[key] = {}
            node = container[key]


def _no_key(where: Sequence[str], key: str) -> str:
    here = join_path(where) or "the spec"
    if key.isdigit():
        return f"{here} is a table, not an array: no index {key}"
    return f"{here} has no key '{key}'"


def has_path(doc: Any, parts: Sequence[str]) -> bool:
    try:
        get_path(doc, parts)
    except PathError:
        return False
    return True


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'model.width=2'`` → ``(['model', 'width'], 2)``.

    The value is read as a TOML value (``2``, ``0.5``, ``[0, 1]``, ``"x"``, ``{name = "a"}``)
    and otherwise taken as a plain string (``dataset.name=digits``).
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise PathError("expected key=value")
    raw = raw.strip()
    value: Any = raw
    if "\n" not in raw:
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            pass
        except RecursionError:
            raise PathError("the value is nested too deep to read") from None
    return split_path(key.strip()), value


def render(value: Any) -> str:
    """A value as it would be written in TOML (near enough), for messages."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # inf, -inf, nan: as TOML writes them
    try:
        return json.dumps(value, ensure_ascii=False, separators=(", ", " = "))
    except (TypeError, ValueError):
        return str(value)


def short(value: Any, *, depth: int = 0) -> str:
    """A compact one-line form of a spec value: ``quantize(k=2)``, ``prune(keep=0.05)+...``.

    A plugin table that is an option of another shows only its name
    (``lc(reference=sgd, ...)``); a list of tables shows each in full (``additive(parts=...)``).
    """
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        if depth > 0:
            return value["name"]
        options = ", ".join(
            f"{k}={short(v, depth=depth + 1)}" for k, v in value.items() if k != "name"
        )
        return f"{value['name']}({options})" if options else value["name"]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "+".join(short(v) for v in value)
    return json.dumps(value, separators=(",", ":"))
