"""The speed table's rows: one measured figure beside its plain baseline, and how a
section that fails becomes a row saying so (so one broken part never hides the rest).

Pure (no torch): ``tests/test_speed_table.py`` checks it without timing anything.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "Row",
    "fmt_hours",
    "fmt_mib",
    "fmt_seconds",
    "format_table",
    "guarded",
    "mean_se",
    "rows_from_dicts",
    "speedup",
]

HEADER = ("section", "figure", "harness", "baseline", "ratio", "target", "note")


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of the table. ``ratio`` is baseline ÷ harness (time or memory): > 1
    means the harness needs less than the baseline; ``None`` when there is none."""

    section: str
    figure: str
    harness: str = ""
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    note: str = ""

    def cells(self) -> tuple[str, ...]:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}×"
        return (
            self.section,
            self.figure,
            self.harness,
            self.baseline,
            ratio,
            self.target,
            self.note,
        )


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def format_row(row: Row) -> str:
    return "| " + " | ".join(_escape(c) for c in row.cells()) + " |"


def format_header() -> str:
    return "| " + " | ".join(HEADER) + " |\n|" + "|".join("---" for _ in HEADER) + "|"


def format_table(rows: Iterable[Row]) -> str:
    """A markdown table of ``rows`` under :data:`HEADER`."""
    return "\n".join([format_header(), *(format_row(r) for r in rows)])


def speedup(harness: float | None, baseline: float | None) -> float | None:
    """baseline ÷ harness, or ``None`` if either is missing, not finite or harness is 0."""
    if harness is None or baseline is None:
        return None
    if not (math.isfinite(harness) and math.isfinite(baseline)) or harness <= 0:
        return None
    return baseline / harness


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:.0f} MiB"


def mean_se(values: list[float]) -> str:
    """``mean ± standard error`` (sample sd / √n; no ± for one value), 4 decimals."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return f"{mean:.4f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return f"{mean:.4f} ± {sd / math.sqrt(n):.4f}"


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".strip()


def guarded(section: str, measure: Callable[[], list[Row]]) -> list[Row]:
    """``measure()``'s rows, or one row naming the error if it raised (an
    ``ImportError``: the part is not available in this checkout)."""
    try:
        return list(measure())
    except ImportError as error:
        return [Row(section, "not available", note=_first_line(error))]
    except Exception as error:  # noqa: BLE001 — fail soft: report, never hide other rows
        return [Row(section, "error", note=_first_line(error))]


_HARNESS_KEYS = ("harness_s", "harness_seconds", "harness", "median_s", "seconds")
_BASELINE_KEYS = ("plain_s", "plain_seconds", "baseline_s", "baseline_seconds", "plain")
_NAME_KEYS = ("name", "comparison", "figure", "command", "what")


def _number(d: Mapping[str, object], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = d.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def rows_from_dicts(
    section: str, dicts: Iterable[Mapping[str, object]], *, target: str = ""
) -> list[Row]:
    """Rows from another benchmark's result dicts, whatever their exact keys: a name
    (``name``/``comparison``/``command``/..., else the non-numeric items), the harness
    and baseline seconds (``harness_s``/``median_s``/... and ``plain_s``/``baseline_s``/
    ...), and ``ratio`` if given (taken as baseline ÷ harness when the seconds are
    missing; else computed from the seconds). Unrecognised numbers go to the note."""
    rows = []
    for d in dicts:
        name = next((str(d[k]) for k in _NAME_KEYS if k in d), None)
        if name is None:
            name = ", ".join(f"{k}={v}" for k, v in d.items() if not isinstance(v, float))
        harness, baseline = _number(d, _HARNESS_KEYS), _number(d, _BASELINE_KEYS)
        ratio = speedup(harness, baseline)
        if ratio is None:
            ratio = _number(d, ("ratio", "speedup"))
        used = set(_HARNESS_KEYS + _BASELINE_KEYS + _NAME_KEYS + ("ratio", "speedup"))
        extra = ", ".join(f"{k}={v:.4g}" for k, v in d.items() if k not in used and
                          isinstance(v, float))  # fmt: skip
        rows.append(
            Row(section, name, fmt_seconds(harness) if harness is not None else "",
                fmt_seconds(baseline) if baseline is not None else "", ratio, target, extra)
        )  # fmt: skip
    return rows
