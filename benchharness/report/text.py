"""Rendering a summary or any query result: terminal table (rich), CSV, JSON, Markdown,
from plain rows (:class:`~benchharness.report.table.Table`; a DataFrame is turned into
one), so that the text reports import no pandas."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from benchharness.errors import BenchError
from benchharness.keypaths import short
from benchharness.report.table import Table
from benchharness.report.units import Unit, missing, plus_minus, unit_for

if TYPE_CHECKING:
    import pandas as pd

FORMATS: tuple[str, ...] = ("table", "csv", "json", "markdown")

# Metrics a table shows by default (besides objectives and claimed ones); `wide` shows all.
TABLE_METRICS = ("test_accuracy", "compression_ratio")


def render(
    df: Table | pd.DataFrame, fmt: str = "table", *, wide: bool = False, width: int | None = None
) -> str:
    """A summary (or any query result) as ``table``, ``csv``, ``json`` or ``markdown``
    (without a final newline: the caller prints it).

    csv and json carry every column with full-precision numbers (json: a list of
    objects, null for missing); table and markdown show axis values, ``n``, each metric
    as "mean ± se" in readable units with claims beside it, and ``*`` on the front —
    the metrics of :data:`TABLE_METRICS` plus the objectives, or every metric if ``wide``.
    """
    if fmt not in FORMATS:
        raise BenchError(f"unknown report format {fmt!r}; allowed: {', '.join(FORMATS)}")
    if not isinstance(df, Table):
        df = Table.from_frame(df)
    if fmt == "csv":
        return _csv(df)
    if fmt == "json":
        tables = set(df.attrs.get("axes", [])) | {"match", "config"}
        records = [
            {
                str(col): _json_value(_parsed(value) if col in tables else value)
                for col, value in zip(df.columns, row, strict=True)
            }
            for row in df.rows
        ]
        return json.dumps(records, indent=2, allow_nan=False, ensure_ascii=False)
    headers, rows, numeric = _display(df, wide=wide)
    if fmt == "markdown":
        from tabulate import tabulate

        align = ["right" if is_num else "left" for is_num in numeric] or None
        return tabulate(
            rows, headers=headers, tablefmt="github", colalign=align, disable_numparse=True
        )
    table = _rich_table(headers, rows, numeric)
    if wide or not width:
        return table
    dropped = 0
    while len(headers) - dropped > 3 and _longest(table) > width:
        dropped += 1  # the rightmost columns are the least important ones
        keep = len(headers) - dropped
        table = _rich_table(headers[:keep], [r[:keep] for r in rows], numeric[:keep])
    if dropped:
        table += f"\n({dropped} more column{'s' if dropped > 1 else ''}: --wide)"
    return table


def terminal_width() -> int | None:
    """Columns of the terminal (or $COLUMNS) if output goes to one; None: no limit."""
    import os
    import shutil
    import sys

    if os.environ.get("COLUMNS", "").isdigit() or sys.stdout.isatty():
        return shutil.get_terminal_size().columns
    return None


def _csv(table: Table) -> str:
    """CSV as pandas' ``to_csv(index=False)`` writes it: missing values empty, other
    values as ``str`` (floats as ``repr``), quoted only where needed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    columns = [_csv_cells([row[i] for row in table.rows]) for i in range(len(table.columns))]
    writer.writerows(zip(*columns, strict=True))
    return buffer.getvalue().rstrip("\n")


def _csv_cells(values: list[Any]) -> list[Any]:
    """One column's CSV cells: missing ones None; timestamps all at the precision the
    column needs (pandas' rule: dates only if every time is midnight, else seconds,
    milliseconds, microseconds or nanoseconds)."""
    cells = [None if missing(v) else v for v in values]
    present = [v for v in cells if v is not None]
    if not present or not all(isinstance(v, datetime.datetime) for v in present):
        return cells
    nanos = [getattr(v, "nanosecond", 0) for v in present]
    if any(nanos):
        digits = 9
    elif any(v.microsecond % 1000 for v in present):
        digits = 6
    elif any(v.microsecond for v in present):
        digits = 3
    elif all(v.time() == datetime.time() for v in present):
        return [None if v is None else v.strftime("%Y-%m-%d") for v in cells]
    else:
        digits = 0
    out: list[Any] = []
    for v in cells:
        if v is None:
            out.append(None)
            continue
        text = v.strftime("%Y-%m-%d %H:%M:%S")
        if digits:
            fraction = f"{v.microsecond:06d}{getattr(v, 'nanosecond', 0):03d}"
            text += "." + fraction[:digits]
        offset = v.strftime("%z")  # "+0100" for a time zone, written as "+01:00"
        out.append(text + (f"{offset[:3]}:{offset[3:]}" if offset else ""))
    return out


def _longest(text: str) -> int:
    return max((len(line) for line in text.splitlines()), default=0)


def _rich_table(headers: list[str], rows: list[list[str]], numeric: list[bool]) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for header, is_num in zip(headers, numeric, strict=True):
        table.add_column(header, justify="right" if is_num else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    buffer = io.StringIO()
    Console(file=buffer, width=100_000, color_system=None, highlight=False).print(table)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines())


def _display(df: Table, *, wide: bool = False) -> tuple[list[str], list[list[str]], list[bool]]:
    """Headers, text cells and right-alignment flags for table and markdown."""
    means = [c[: -len("_mean")] for c in df.columns if c.endswith("_mean")]
    metrics = [m for m in means if not m.startswith("claimed_")]
    if not metrics:  # a plain query result
        cells = [[_plain(v) for v in row] for row in df.rows]
        return [str(c) for c in df.columns], cells, [df.is_number(c) for c in df.columns]

    claims = [c[len("claimed_") :] for c in df.columns if c.startswith("claimed_")]
    claimed_only = [m for m in claims if not m.endswith("_se") and m not in metrics]
    directions = {}
    for text in df.attrs.get("objectives", []):
        name, _, way = text.partition(":")
        directions[name] = " ↑" if way == "max" else " ↓"
    shown = {"spec_name", "config_id", "quick", "n", "failed", "on_front", "realised"}
    shown |= {"p_front", "dominance"}
    axes = df.attrs.get("axes") or [
        c
        for c in df.columns
        if c not in shown and not c.startswith("claimed_") and not c.endswith(("_mean", "_se"))
    ]

    columns: list[tuple[str, list[str], bool]] = []  # header, cells, right-aligned
    if "on_front" in df:
        columns.append(("front", ["*" if _true(v) else "" for v in df.column("on_front")], False))
    if "p_front" in df:
        columns.append(("P(front)", [f"{float(v):.2f}" for v in df.column("p_front")], True))
    if "dominance" in df:
        columns.append(("dominated", [_plain(v) for v in df.column("dominance")], False))
    if "spec_name" in df and len({v for v in df.column("spec_name") if not missing(v)}) > 1:
        columns.append(("spec", [_plain(v) for v in df.column("spec_name")], False))
    if "quick" in df and any(_true(v) for v in df.column("quick")):
        columns.append(("quick", ["quick" if _true(v) else "" for v in df.column("quick")], False))
    for axis in (a for a in axes if a in df.columns):
        columns.append((axis, [_axis_text(v) for v in df.column(axis)], df.is_number(axis)))
    if "n" in df:
        columns.append(("n", [_plain(v) for v in df.column("n")], True))
    if "failed" in df:
        columns.append(("failed", [_plain(v) if v else "" for v in df.column("failed")], True))
    if "realised" in df and "compression_ratio_mean" in df:
        # a compressed model's saving is "realised" when the exported model has it,
        # "simulated" when only the bit model counts it (e.g. masks kept dense)
        cells = [
            ""
            if missing(r) or missing(c) or float(c) == 1.0
            else ("realised" if bool(r) else "simulated")
            for r, c in zip(df.column("realised"), df.column("compression_ratio_mean"), strict=True)
        ]
        if any(cells):
            columns.append(("saving", cells, False))
    for m in metrics + claimed_only:
        measured = df.get(f"{m}_mean")
        claimed = df.get(f"claimed_{m}")
        if (
            claimed is None
            and m not in directions
            and (measured is None or all(missing(v) for v in measured))
        ):
            continue
        if not wide and m not in TABLE_METRICS and m not in directions:
            continue
        if (
            not wide
            and m == "flops_effective"
            and m not in directions
            and measured is not None
            and _same(measured, df.get("flops_mean"))
        ):
            continue  # nothing compressed: identical to the dense FLOPs column
        unit = unit_for(m, [*(measured or []), *(claimed or [])])
        if measured is not None:
            cells = _pm_column(measured, df.get(f"{m}_se"), unit)
            columns.append((unit.label + directions.get(m, ""), cells, True))
        if claimed is not None:
            cells = _pm_column(claimed, df.get(f"claimed_{m}_se"), unit)
            columns.append((f"claimed {unit.label}", cells, True))
    headers = [header for header, _, _ in columns]
    rows = [list(row) for row in zip(*(cells for _, cells, _ in columns), strict=True)]
    return headers, rows, [right for _, _, right in columns]


def _parsed(value: Any) -> Any:
    """Table-valued axes are stored as JSON text; JSON output nests them as objects."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _axis_text(value: Any) -> str:
    """Axis values that are tables (stored as JSON text) in their short form."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return short(json.loads(value))
        except ValueError:
            pass
    return _plain(value)


def _pm_column(means: Sequence[Any], ses: Sequence[Any] | None, unit: Unit) -> list[str]:
    ses_list = [None] * len(means) if ses is None else list(ses)
    return [plus_minus(mean, se, unit) for mean, se in zip(means, ses_list, strict=True)]


def _same(a: Sequence[Any], b: Sequence[Any] | None) -> bool:
    """Equal columns, missing values equal to each other (as ``Series.equals``)."""
    if b is None or len(a) != len(b):
        return False
    return all((missing(x) and missing(y)) or x == y for x, y in zip(a, b, strict=True))


def _plain(value: Any) -> str:
    if missing(value):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            return _plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _true(value: Any) -> bool:
    return not missing(value) and bool(value)


def _json_value(value: Any) -> Any:
    if missing(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return str(value)
