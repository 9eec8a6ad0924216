"""Plugin tables nested in another plugin's options: ``reference`` of a compression scheme,
``parts`` of ``additive``, ``base`` of a wrapping optimizer.

A plugin marks such a field with :class:`PluginTable` in its annotation::

    class Options(PluginOptions):
        reference: Annotated[dict[str, Any], PluginTable("optimizer")] = Field(...)
        parts: Annotated[list[dict[str, Any]], PluginTable("compressor", many=True)] = ...

The harness then validates every nested table like a top-level one when it checks a
spec (``bench validate``, and before any job of ``bench run`` starts): the plugin must be
registered, its options must validate against its ``Options`` (strict types, finite
numbers), recursively, and each problem is one line with the full key path, e.g.
``specs/x.toml: optimizer.reference.lr — input should be a finite number, got inf``.

On its own (options built in Python), the marker only checks the shape: a table with a
string ``name``, or an array of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["PluginTable", "plugin_table_fields"]


@dataclasses.dataclass(frozen=True)
class PluginTable:
    """Annotation marker: this field holds a plugin table of ``kind`` (``many``: an array)."""

    kind: str
    many: bool = False

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check_shape, handler(source))

    def _check_shape(self, value: Any) -> Any:
        what = f"{_article(self.kind)} {self.kind} table"
        if self.many:
            what = f"an array of {self.kind} tables"
        if self.many and not isinstance(value, list):
            raise ValueError(f"must be {what}")
        for table in value if self.many else [value]:
            if not isinstance(table, dict) or not isinstance(table.get("name"), str):
                raise ValueError(f"must be {what}, each with a `name` (a {self.kind} plugin)")
        return value


def plugin_table_fields(model: type[BaseModel]) -> dict[str, PluginTable]:
    """The fields of ``model`` marked with :class:`PluginTable`, by field name."""
    found = {}
    for name, field in model.model_fields.items():
        for item in field.metadata:
            if isinstance(item, PluginTable):
                found[name] = item
    return found


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
