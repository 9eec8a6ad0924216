"""Report objectives: metric aliases and ``metric:max|min`` parsing."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from benchharness.errors import BenchError
from benchharness.records import METRIC_ALIASES, METRIC_COLUMNS

ALIASES: dict[str, str] = METRIC_ALIASES
# Dense FLOPs cannot tell compressed models apart: the defaults see compression.
DEFAULT_OBJECTIVES: tuple[str, ...] = ("accuracy:max", "flops_effective:min", "size:min")
NUMERIC_METRICS: tuple[str, ...] = tuple(m for m, t in METRIC_COLUMNS.items() if t != "BOOLEAN")


@dataclasses.dataclass(frozen=True)
class Objective:
    metric: str  # a column name: a METRIC_COLUMNS name or a numeric `extra` metric
    maximize: bool

    def __str__(self) -> str:
        return f"{self.metric}:{'max' if self.maximize else 'min'}"


def parse_objectives(
    objectives: str | Sequence[str] | None, extra_metrics: Sequence[str] = ()
) -> list[Objective]:
    """``["accuracy:max", "flops:min"]`` (or one comma-separated string) to Objectives.

    Names may be aliases (accuracy, loss, flops, params, size/bits, ratio, latency, time),
    numeric METRIC_COLUMNS names or numeric ``extra`` metrics in ``extra_metrics``.
    """
    if objectives is None:
        objectives = DEFAULT_OBJECTIVES
    if isinstance(objectives, str):
        objectives = [part for part in objectives.split(",")]
    allowed = {**ALIASES, **{m: m for m in NUMERIC_METRICS}, **{m: m for m in extra_metrics}}
    problems: list[str] = []
    parsed: list[Objective] = []
    for text in objectives:
        name, _, direction = text.strip().partition(":")
        name, direction = name.strip(), direction.strip().lower()
        if name not in allowed:
            problems.append(
                f"objective {text.strip()!r}: unknown metric {name!r}; allowed: "
                + ", ".join(sorted(allowed))
            )
        elif direction not in ("max", "min"):
            problems.append(
                f"objective {text.strip()!r}: direction must be max or min, as in {name}:max"
            )
        else:
            parsed.append(Objective(allowed[name], direction == "max"))
    if not objectives:
        problems.append("no objectives given; e.g. accuracy:max,flops:min")
    if problems:
        raise BenchError("\n".join(problems))
    metrics = [o.metric for o in parsed]
    duplicated = sorted({m for m in metrics if metrics.count(m) > 1})
    if duplicated:
        raise BenchError(f"objective metric given twice: {', '.join(duplicated)}")
    return parsed
