"""``bench report --compare A B``: two configurations over seeds, metric by metric
(difference of means with a confidence interval, P(A beats B), seeds that would settle
it; the statistics are :func:`benchharness.report.stats.compare_samples`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from benchharness.errors import BenchError
from benchharness.report.claims import matches
from benchharness.report.columns import filter_sql, metric_expr
from benchharness.report.objectives import parse_objectives
from benchharness.report.stats import compare_samples
from benchharness.store import Store


def resolve(store: Store, which: str, specs: Sequence[str] = ()) -> str:
    """The config id that ``which`` names: a config id (or its first characters), or axis
    values ``path=value,path=value`` (values as JSON, else text) matching exactly one."""
    where, params = filter_sql(list(specs), True)
    configs = store.query(
        f"""SELECT config_id, any_value(config) AS config FROM runs
            WHERE {where} AND status = 'completed' GROUP BY config_id ORDER BY config_id""",
        params,
    )
    if "=" in which:
        wanted = {}
        for part in which.split(","):
            key, _, text = part.partition("=")
            try:
                wanted[key.strip()] = json.loads(text.strip())
            except ValueError:
                wanted[key.strip()] = text.strip()
        hits = [
            c
            for c, cfg in zip(configs["config_id"], configs["config"], strict=True)
            if matches(json.loads(cfg), wanted)
        ]
    else:
        hits = [c for c in configs["config_id"] if c.startswith(which)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise BenchError(f"--compare: no configuration with completed runs matches '{which}'")
    raise BenchError(
        f"--compare: '{which}' matches {len(hits)} configurations ({', '.join(hits[:5])}"
        + (", ..." if len(hits) > 5 else "")
        + "); add axis values or use a config id"
    )


def compare(
    store: Store,
    a: str,
    b: str,
    *,
    spec: str | None = None,
    objectives: str | Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per objective metric: A − B (Welch, or a paired bootstrap when A and B
    ran the same seeds), its 95 % interval, P(A beats B) and the seeds needed per
    configuration; metrics with fewer than two seeds on a side say so in ``method``."""
    specs = [spec] if spec else []
    ids = [resolve(store, a, specs), resolve(store, b, specs)]
    if ids[0] == ids[1]:
        raise BenchError(f"--compare: '{a}' and '{b}' are the same configuration ({ids[0]})")
    from benchharness.report.columns import numeric_extras

    where, params = filter_sql(specs, True)
    extras = numeric_extras(store, where, params)
    chosen = parse_objectives(objectives, extras)
    selects = ", ".join(f"{metric_expr(o.metric, extras)} AS m{i}" for i, o in enumerate(chosen))
    runs = store.query(
        f"""SELECT config_id, seed, {selects} FROM runs
            WHERE status = 'completed' AND config_id IN (?, ?) ORDER BY seed""",
        ids,
    )
    rows: list[dict[str, Any]] = []
    for i, objective in enumerate(chosen):
        side = [runs[runs["config_id"] == c].dropna(subset=[f"m{i}"]) for c in ids]
        values = [s[f"m{i}"].to_numpy(dtype=float) for s in side]
        seeds = [list(s["seed"]) for s in side]
        base = {"metric": objective.metric, "a": ids[0], "b": ids[1]}
        if min(len(v) for v in values) < 2:
            rows.append(
                {**base, "n_a": len(values[0]), "n_b": len(values[1]), "method": "too few seeds"}
            )
            continue
        paired = seeds[0] == seeds[1]
        result = compare_samples(
            objective.metric,
            values[0],
            values[1],
            maximize=objective.maximize,
            paired=paired,
            seed=seed,
        )
        rows.append({**base, **result.as_dict()})
    return pd.DataFrame(rows)
