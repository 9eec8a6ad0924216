"""Display units of report tables: labels, scales and "mean ± se" text."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any


def missing(value: Any) -> bool:
    """None, NaN, pandas' NA or NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str | int):
        return False
    try:
        return bool(value != value)  # NaN and NaT are the values unequal to themselves
    except (TypeError, ValueError):  # pandas' NA has no truth value, arrays have no one
        return type(value).__name__ == "NAType"


@dataclasses.dataclass(frozen=True)
class Unit:
    label: str
    scale: float = 1.0  # displayed = value * scale
    decimals: int | None = None  # None: about four significant digits


def unit_for(metric: str, values: Iterable[Any]) -> Unit:
    """The unit of ``metric``'s column; prefixes (k, M, G, KiB...) from its largest
    absolute value (missing values ignored)."""
    peak = max((abs(float(v)) for v in values if not missing(v)), default=0.0)
    pretty = metric.replace("_", " ")
    if metric == "test_accuracy":
        return Unit("accuracy (%)", 100.0, 2)
    if metric == "test_loss":
        return Unit("loss")
    if metric in ("params", "flops", "flops_effective", "input_values"):
        label = {"flops": "FLOPs", "flops_effective": "eff. FLOPs"}.get(metric, pretty)
        for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if peak >= factor:
                return Unit(f"{label} ({prefix})", 1 / factor)
        return Unit(label, 1.0)
    if metric == "size_bits":
        if peak >= 8 * 1024 * 1024:
            return Unit("size (MiB)", 1 / (8 * 1024 * 1024))
        if peak >= 8 * 1024:
            return Unit("size (KiB)", 1 / (8 * 1024))
        return Unit("size (bits)", 1.0, 0)
    if metric in ("compression_ratio", "input_ratio"):
        return Unit(f"{'ratio' if metric == 'compression_ratio' else pretty} (×)")
    if metric.startswith("latency_") and metric.endswith("_ms"):
        return Unit(f"{pretty[: -len(' ms')]} (ms)")
    if metric == "train_seconds":
        return Unit("train time (s)")
    if metric == "latency_batch_size":
        return Unit("batch size", 1.0, 0)
    return Unit(pretty)


def plus_minus(mean: Any, se: Any, unit: Unit) -> str:
    if missing(mean):
        return ""
    mean = float(mean) * unit.scale
    se = None if missing(se) else float(se) * unit.scale
    decimals = unit.decimals if unit.decimals is not None else decimals_for(mean, 4)
    if se is not None and unit.decimals is None and se > 0:
        decimals = max(decimals, min(decimals_for(se, 2), 6))
    text = fixed(mean, decimals)
    return text if se is None else f"{text} ± {fixed(se, decimals)}"


def decimals_for(value: float, significant: int) -> int:
    if not math.isfinite(value) or value == 0:
        return 2
    return max(0, min(6, significant - 1 - math.floor(math.log10(abs(value)))))


def fixed(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return str(value)
    return f"{value:,.{decimals}f}"
