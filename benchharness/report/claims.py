"""Claims vs measured: every published number of the selected specs beside the matching
configurations' mean ± SE over seeds, the difference in standard errors and a verdict
(the rule is :func:`benchharness.report.stats.verdict`)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from benchharness.report.aggregate import summary_table
from benchharness.report.columns import filter_sql
from benchharness.report.objectives import ALIASES
from benchharness.report.stats import claim_z, verdict
from benchharness.report.table import Table
from benchharness.store import Store, StoreReader

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "spec_name",
    "quick",
    "config_id",
    "match",
    "metric",
    "source",
    "claimed",
    "claimed_se",
    "n",
    "mean",
    "se",
    "difference",
    "z",
    "verdict",
)


def claims_table(
    store: Store, *, spec: str | Sequence[str] | None = None, include_quick: bool = True
) -> pd.DataFrame:
    """:func:`claims_rows` as a DataFrame."""
    return claims_rows(store, spec=spec, include_quick=include_quick).to_frame()


def claims_rows(
    store: Store | StoreReader,
    *,
    spec: str | Sequence[str] | None = None,
    include_quick: bool = True,
    summary: Table | None = None,
) -> Table:
    """One row per claim and matching configuration (per quick flag), or one "not run"
    row per claim that matches no configuration with runs; columns :data:`COLUMNS`
    (``match`` is a dict; ``difference`` = mean − claimed; ``z`` = difference in combined
    standard errors).

    ``summary``: the caller's :func:`~benchharness.report.aggregate.summary_table` of the
    same runs (same ``spec`` and ``include_quick``, all rows, no replicate axes), which
    holds every claimed metric; None: it is computed here."""
    with store.reader() as db:  # one read connection for every query
        return _claims_rows(db, spec, include_quick, summary)


def _claims_rows(
    store: StoreReader,
    spec: str | Sequence[str] | None,
    include_quick: bool,
    summary: Table | None,
) -> Table:
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    where, params = filter_sql(specs, include_quick)
    claims = Table.fetch(
        store,
        f"""SELECT spec_name, match, metric, value, se, source FROM claims
            WHERE spec_name IN (SELECT DISTINCT spec_name FROM runs WHERE {where})
            ORDER BY spec_name, metric, match::VARCHAR""",
        params,
    ).records()
    if not claims:
        return Table.from_records(COLUMNS, [])
    metrics = sorted({ALIASES.get(c["metric"], c["metric"]) for c in claims})
    if summary is None:
        summary = summary_table(
            store,
            spec=specs or None,
            include_quick=include_quick,
            objectives=[f"{metrics[0]}:max"],
            metrics=metrics,
        )
    _, configs = store.fetch(
        f"""SELECT spec_name, quick, config_id, any_value(config) AS config
            FROM runs WHERE {where} GROUP BY ALL""",
        params,
    )
    config_of = {
        (spec_name, bool(quick), config_id): json.loads(config)
        for spec_name, quick, config_id, config in configs
    }
    summary_rows = summary.records()
    rows: list[dict[str, Any]] = []
    for claim in claims:
        match = claim["match"]
        match = json.loads(match) if isinstance(match, str) else dict(match)
        metric = ALIASES.get(claim["metric"], claim["metric"])
        base = {
            "spec_name": claim["spec_name"],
            "match": match,
            "metric": metric,
            "source": claim["source"],
            "claimed": float(claim["value"]),
            "claimed_se": _number(claim["se"]),
        }
        hits = [
            r
            for r in summary_rows
            if r["spec_name"] == claim["spec_name"]
            and matches(
                config_of.get((r["spec_name"], bool(r["quick"]), r["config_id"]), {}), match
            )
        ]
        hits = [r for r in hits if int(r["n"]) > 0]
        if not hits:
            rows.append({**base, "quick": None, "config_id": None, "n": 0, "verdict": "not run"})
            continue
        for row in hits:
            n = int(row["n"])
            mean = _number(row.get(f"{metric}_mean"))
            se = _number(row.get(f"{metric}_se"))
            z = None
            if mean is not None and se is not None:
                z = claim_z(mean, se, base["claimed"], base["claimed_se"])
            rows.append(
                {
                    **base,
                    "quick": bool(row["quick"]),
                    "config_id": row["config_id"],
                    "n": n if mean is not None else 0,
                    "mean": mean,
                    "se": se,
                    "difference": None if mean is None else mean - base["claimed"],
                    "z": z,
                    "verdict": verdict(n if mean is not None else 0, mean, se, **_c(base)),
                }
            )
    return Table.from_records(COLUMNS, rows)


def _c(base: dict[str, Any]) -> dict[str, Any]:
    return {"claimed": base["claimed"], "claimed_se": base["claimed_se"]}


def matches(config: dict[str, Any], match: dict[str, Any]) -> bool:
    """Whether every ``dotted.path = value`` of ``match`` holds in ``config`` (numbers
    compare by value: 1 matches 1.0)."""
    for path, want in match.items():
        node: Any = config
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        if _is_number(want) and _is_number(node):
            if float(want) != float(node):
                return False
        elif node != want:
            return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def render_claims(df: Table | pd.DataFrame, fmt: str = "table") -> str:
    """The claims table in ``fmt``: table/markdown show value ± SE per claim; csv/json
    every column."""
    from benchharness.report.text import render

    if fmt in ("csv", "json"):
        return render(df, fmt)
    claims = (df if isinstance(df, Table) else Table.from_frame(df)).records()
    if not claims:
        return "no claims"
    shown = [
        {
            "claim": _claim_label(r),
            "metric": r["metric"],
            "claimed": _pm(r["claimed"], r["claimed_se"], r["metric"]),
            "measured": _pm(r["mean"], r["se"], r["metric"]),
            "n": int(r["n"]),
            "Δ/SE": "" if _number(r["z"]) is None else f"{r['z']:+.1f}",
            "verdict": r["verdict"],
        }
        for r in claims
    ]
    return render(Table.from_records(list(shown[0]), shown), fmt)


def _claim_label(row: dict[str, Any]) -> str:
    label = " ".join(f"{k}={v}" for k, v in row["match"].items())
    return f"{label} (quick)" if row["quick"] is True else label


def _pm(mean: Any, se: Any, metric: str) -> str:
    mean, se = _number(mean), _number(se)
    if mean is None:
        return ""
    scale, unit = (100.0, " %") if metric == "test_accuracy" else (1.0, "")
    text = f"{mean * scale:.4g}"
    return f"{text} ± {se * scale:.2g}{unit}" if se is not None else f"{text}{unit}"
