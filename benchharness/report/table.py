"""A query result as plain Python rows: what the text reports aggregate, filter and render,
so that ``bench report`` imports no pandas (nor numpy). Paths that need a DataFrame (the
public ``summarize``, plots, HTML, noise) build one from the same rows with
:meth:`Table.to_frame`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from benchharness.report.units import missing

if TYPE_CHECKING:
    import pandas as pd

    from benchharness.report.columns import Source

_NUMBER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT"}
    | {"UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL"}
)
_INTEGER_TYPES = _NUMBER_TYPES - {"FLOAT", "DOUBLE", "DECIMAL"}
_SHORT = ("float32", "float16")  # numpy floats whose text is shorter than a Python float's


@dataclasses.dataclass
class Table:
    """Column names, their SQL types (``"DOUBLE"``, ``"VARCHAR"``, ...; ``"ANY"`` when
    unknown) and rows of Python values (None for missing); ``attrs`` as ``DataFrame.attrs``
    (``axes``, ``objectives``)."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def fetch(cls, source: Source, sql: str, params: list[Any] | None = None) -> Table:
        """The result of one (harness-written) query on ``source``."""
        described, rows = source.fetch(sql, params)
        return cls([name for name, _ in described], [kind for _, kind in described], rows)

    @classmethod
    def from_records(cls, columns: Sequence[str], records: Iterable[dict[str, Any]]) -> Table:
        """Rows from dicts (missing keys: None), typed as ``pd.DataFrame(rows)`` would
        type them: BIGINT if every value is an int, DOUBLE if every value is a number (or
        an int with missing ones), BOOLEAN if every value is a bool, else ANY."""
        rows = [tuple(record.get(c) for c in columns) for record in records]
        types = [_kind_of(row[i] for row in rows) for i in range(len(columns))]
        return cls(list(columns), types, rows)

    @classmethod
    def from_frame(cls, df: pd.DataFrame) -> Table:
        """A DataFrame's columns (numeric dtypes as DOUBLE), rows and attrs."""
        from pandas.api.types import is_bool_dtype, is_numeric_dtype

        types = [
            "BOOLEAN" if is_bool_dtype(df[c]) else ("DOUBLE" if is_numeric_dtype(df[c]) else "ANY")
            for c in df.columns
        ]
        columns = [
            # float32 as numpy scalars: as Python floats they would print more digits
            [_python(v) for v in (col.to_numpy() if col.dtype.name in _SHORT else col)]
            for _, col in df.items()
        ]
        rows = list(zip(*columns, strict=True)) if columns else [() for _ in range(len(df))]
        return cls([str(c) for c in df.columns], types, rows, dict(df.attrs))

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, column: object) -> bool:
        return column in self.columns

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def get(self, name: str) -> list[Any] | None:
        """The column's values, or None if there is no such column."""
        return self.column(name) if name in self.columns else None

    def is_number(self, name: str) -> bool:
        """Whether the column holds numbers (not booleans): right-aligned in tables."""
        return self.types[self.columns.index(name)].split("(")[0] in _NUMBER_TYPES

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def where(self, name: str) -> Table:
        """The rows whose value in column ``name`` is true."""
        index = self.columns.index(name)
        return dataclasses.replace(self, rows=[r for r in self.rows if r[index]])

    def with_column(self, name: str, kind: str, values: Sequence[Any]) -> Table:
        """This table with column ``name`` set to ``values`` (replaced, or added last)."""
        if name in self.columns:
            i = self.columns.index(name)
            rows = [(*r[:i], v, *r[i + 1 :]) for r, v in zip(self.rows, values, strict=True)]
            types = [*self.types[:i], kind, *self.types[i + 1 :]]
            return dataclasses.replace(self, types=types, rows=rows)
        rows = [(*r, v) for r, v in zip(self.rows, values, strict=True)]
        return dataclasses.replace(
            self, columns=[*self.columns, name], types=[*self.types, kind], rows=rows
        )

    def without(self, name: str) -> Table:
        i = self.columns.index(name)
        return dataclasses.replace(
            self,
            columns=self.columns[:i] + self.columns[i + 1 :],
            types=self.types[:i] + self.types[i + 1 :],
            rows=[r[:i] + r[i + 1 :] for r in self.rows],
        )

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame with the dtypes DuckDB's ``.df()`` gives their SQL types:
        integers int64 (nullable ``Int64`` with NULLs), other numbers float64, booleans
        bool (nullable ``boolean`` with NULLs), the rest as pandas infers."""
        import pandas as pd

        data: dict[str, Any] = {}
        for i, (name, kind) in enumerate(zip(self.columns, self.types, strict=True)):
            values = [row[i] for row in self.rows]
            base = kind.split("(")[0]
            has_missing = any(missing(v) for v in values)
            if base in _INTEGER_TYPES:
                data[name] = pd.Series(values, dtype="Int64" if has_missing else "int64")
            elif base in _NUMBER_TYPES:
                data[name] = pd.Series(
                    [math.nan if missing(v) else float(v) for v in values], dtype="float64"
                )
            elif base == "BOOLEAN":
                data[name] = pd.Series(values, dtype="boolean" if has_missing else "bool")
            else:
                data[name] = pd.Series(values, dtype=None if values else object)
        df = pd.DataFrame(data, columns=self.columns)
        df.attrs.update(self.attrs)
        return df


def _python(value: Any) -> Any:
    """numpy scalars as Python numbers, pandas' NA and NaN as None; float32/float16 are
    kept, since their text is shorter than the float64 they would become."""
    if missing(value):
        return None
    kind = type(value)
    if kind.__module__ == "numpy" and hasattr(value, "item"):
        return value if kind.__name__ in _SHORT else value.item()
    return value


def _kind_of(values: Iterable[Any]) -> str:
    values = list(values)
    present = [v for v in values if not missing(v)]
    if not present:
        return "ANY"
    if all(isinstance(v, bool) for v in present):
        return "BOOLEAN" if len(present) == len(values) else "ANY"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        integers = all(isinstance(v, int) for v in present) and len(present) == len(values)
        return "BIGINT" if integers else "DOUBLE"
    return "ANY"
