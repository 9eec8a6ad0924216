"""Collecting the problems of a spec and formatting each as one line:
``specs/x.toml: transform.ratio — must be in (0, 1], got 1.5``."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from benchharness.errors import BenchError
from benchharness.keypaths import join_path, render

__all__ = ["Problems", "render", "unknown_key", "validate"]


class Problems:
    """The problems found in one spec file, each formatted ``file: key — message``."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def __bool__(self) -> bool:
        return bool(self.lines)

    def add(self, key: str, message: str) -> None:
        line = f"{self.source}: {key} — {message}"
        if line not in self.lines:
            self.lines.append(line)

    def add_validation_error(
        self,
        key: str,
        error: ValidationError | Sequence[Any],
        data: Any,
        *,
        fields: Iterable[str],
        what: str,
    ) -> None:
        """One line per pydantic error (of ``error``, or a list of them) of validating
        ``data``, the table at ``key``.

        ``fields`` are the model's field names, listed when a key is unknown.
        """
        errors = error.errors() if isinstance(error, ValidationError) else error
        for err in errors:
            loc = _existing_loc(data, err["loc"])
            path = ".".join(p for p in (key, join_path(loc)) if p)
            if err["type"] == "extra_forbidden":
                known = fields if len(err["loc"]) == 1 else ()
                self.add(path, unknown_key(str(err["loc"][-1]), known, f"option for {what}"))
            else:
                self.add(path, _message(err))

    def extend(self, other: Problems) -> None:
        for line in other.lines:
            if line not in self.lines:
                self.lines.append(line)

    def raise_if_any(self) -> None:
        if self.lines:
            raise BenchError("\n".join(self.lines))


def validate(
    problems: Problems,
    key: str,
    model: type[BaseModel],
    data: Any,
    *,
    what: str,
    context: dict[str, Any] | None = None,
    reported: Iterable[str] = (),
) -> BaseModel | None:
    """``model`` validated from ``data`` (the table at ``key``), or None after reporting why.

    Validation is strict, as for a JSON document: an integer is a valid float, but ``true``
    or ``"0.1"`` is not, and nothing is coerced. ``context`` is pydantic's validation
    context (the registry, for nested plugin tables). Errors of the fields in ``reported``
    are left out: the caller has already reported those fields more precisely."""
    if not isinstance(data, dict):
        problems.add(key, f"must be a table, got {render(data)}")
        return None
    try:
        document = json.dumps(data, default=str)
    except (ValueError, RecursionError):
        problems.add(key, "cannot be read as plain values (nested too deep?)")
        return None
    try:
        return model.model_validate_json(document, strict=True, context=context)
    except ValidationError as error:
        skip = set(reported)
        errors = [e for e in error.errors() if not (e["loc"] and e["loc"][0] in skip)]
        if not errors and not skip:
            problems.add(key, "invalid")
        problems.add_validation_error(key, errors, data, fields=model.model_fields, what=what)
        return None


def _existing_loc(data: Any, loc: Sequence[str | int]) -> list[str | int]:
    """The prefix of a pydantic ``loc`` that exists in ``data`` (drops union-member tags)."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif i == len(loc) - 1 and isinstance(node, dict):
            out.append(part)  # a missing or unknown key: name it
            break
        else:
            break
        out.append(part)
    return out


# Validation runs on the spec as JSON: say what TOML calls the types.
_TOML_WORDS = (
    ("should be an object", "should be a table"),
    ("should be a valid dictionary", "should be a table"),
    ("should be a valid list", "should be an array"),
    ("should be a valid array", "should be an array"),
)


def _message(err: Any) -> str:
    msg = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if msg[:1].isupper() and not msg[1:2].isupper():
        msg = msg[0].lower() + msg[1:]
    for pydantic_word, toml_word in _TOML_WORDS:
        msg = msg.replace(pydantic_word, toml_word)
    value = err.get("input")
    if err["type"] != "missing" and _is_scalar(value) and "got " not in msg:
        msg = f"{msg}, got {render(value)}"
    return msg


def unknown_key(name: str, known: Iterable[str], what: str) -> str:
    """``unknown <what> (did you mean 'x'?); known: a, b`` for a misspelt key."""
    known = sorted(known)
    msg = f"unknown {what}"
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        msg += f" (did you mean '{close[0]}'?)"
    if known:
        msg += f"; known: {', '.join(known)}"
    return msg


def _is_scalar(value: Any) -> bool:
    return value is not None and not isinstance(value, dict | list | tuple)
