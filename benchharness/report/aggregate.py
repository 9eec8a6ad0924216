"""The summary: runs grouped by configuration over seeds (mean, standard error, n), the
Pareto flag and matching claims, computed in one DuckDB query."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from benchharness.errors import BenchError
from benchharness.report.columns import (
    NUMBER_TYPES,
    PATH_OF_KEY,
    axes_of,
    claim_metrics_of,
    filter_sql,
    json_key,
    measured_metrics,
    metric_expr,
    numeric_extras,
    sql_str,
)
from benchharness.report.objectives import ALIASES, Objective, parse_objectives
from benchharness.store import Store, quote_ident


def summarize(
    store: Store,
    *,
    spec: str | Sequence[str] | None = None,
    objectives: str | Sequence[str] | None = None,
    pareto: bool = False,
    include_quick: bool = True,
) -> pd.DataFrame:
    """One row per (spec_name, config_id, quick): the axis values, ``n`` completed runs,
    ``<metric>_mean`` and ``<metric>_se`` (sample stddev / sqrt(n); NULL for n = 1) for
    every numeric metric measured, ``failed`` (if any run failed), ``claimed_<metric>``
    and ``claimed_<metric>_se`` from matching claims, and ``on_front``: no other config
    of the same spec (and the same quick flag) is at least as good on every objective and
    strictly better on one. With ``pareto=True`` only front rows, best first objective
    first. ``df.attrs`` holds ``axes`` and ``objectives`` (for ``render``).
    """
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    where, params = filter_sql(specs, include_quick)
    count = store.query(f"SELECT count(*) AS n FROM runs WHERE {where}", params)
    if int(count["n"].iloc[0]) == 0:
        what = f" of spec {', '.join(specs)}" if specs else ""
        quick = "" if include_quick else " (quick runs excluded)"
        raise BenchError(f"no runs{what} in {store.path}{quick}")

    extras = numeric_extras(store, where, params)
    chosen = parse_objectives(objectives, extras)
    measured = measured_metrics(store, where, params, extras)
    objective_metrics = [o.metric for o in chosen]
    metrics = objective_metrics + [m for m in measured if m not in objective_metrics]
    axes = axes_of(store, where, params)
    if pareto:
        missing = [str(o) for o in chosen if o.metric not in measured]
        if missing:
            raise BenchError(
                f"objective {', '.join(missing)} has no values in the selected runs;"
                " choose others with --objectives"
            )
    claim_metrics = claim_metrics_of(store, where, params)

    sql = summary_sql(axes, metrics, extras, chosen, claim_metrics, where)
    if pareto:
        first = chosen[0]
        order = f"{quote_ident(first.metric + '_mean')} {'DESC' if first.maximize else 'ASC'}"
        sql += f"\nWHERE on_front\nORDER BY spec_name, quick, {order}, config_id"
    else:
        axis_order = "".join(f", {quote_ident(name)}" for name, _ in axes)
        sql += f"\nORDER BY spec_name, quick{axis_order}, config_id"
    df = store.query(sql, params * 2)
    if "failed" in df and not (df["failed"] > 0).any():
        df = df.drop(columns="failed")
    df.attrs["axes"] = [name for name, _ in axes]
    df.attrs["objectives"] = [str(o) for o in chosen]
    return df


def summary_sql(
    axes: list[tuple[str, str | None]],
    metrics: list[str],
    extras: list[str],
    chosen: list[Objective],
    claim_metrics: dict[str, list[str]],
    where: str,
) -> str:
    q = quote_ident
    done = "status = 'completed'"

    axis_cols = []
    for name, column in axes:
        source = q(column) if column else f"axes->>'{sql_str('$.' + json_key(name))}'"
        axis_cols.append(f"any_value({source}) AS {q(name)}")
    metric_cols = []
    for m in metrics:
        value = metric_expr(m, extras)
        metric_cols.append(f"avg({value}) FILTER (WHERE {done}) AS {q(m + '_mean')}")
        metric_cols.append(
            f"stddev_samp({value}) FILTER (WHERE {done})"
            f" / sqrt(count({value}) FILTER (WHERE {done})) AS {q(m + '_se')}"
        )
    grouped = ",\n       ".join(
        [
            "spec_name",
            "config_id",
            "quick",
            *axis_cols,
            f"count(*) FILTER (WHERE {done}) AS n",
            "count(*) FILTER (WHERE status = 'failed') AS failed",
            *metric_cols,
            f"coalesce(any_value(config) FILTER (WHERE {done}), any_value(config)) AS config",
        ]
    )

    def mean(alias: str, o: Objective) -> str:
        return f"{alias}.{q(o.metric + '_mean')}"

    finite_a = " AND ".join(f"isfinite({mean('a', o)})" for o in chosen)
    finite_b = " AND ".join(f"isfinite({mean('b', o)})" for o in chosen)
    as_good = " AND ".join(
        f"{mean('b', o)} {'>=' if o.maximize else '<='} {mean('a', o)}" for o in chosen
    )
    better = " OR ".join(
        f"{mean('b', o)} {'>' if o.maximize else '<'} {mean('a', o)}" for o in chosen
    )

    alias_cases = " ".join(
        f"WHEN '{sql_str(alias)}' THEN '{sql_str(target)}'" for alias, target in ALIASES.items()
    )
    claim_cols, claim_names = [], []
    for metric in claim_metrics:
        pick = f"canon = '{sql_str(metric)}' AND rank = 1"
        for field, name in (("value", f"claimed_{metric}"), ("se", f"claimed_{metric}_se")):
            claim_cols.append(f"max({field}) FILTER (WHERE {pick}) AS {q(name)}")
            claim_names.append(name)
    claim_select = "".join(f", c.{q(name)}" for name in claim_names)
    claim_pivot = ",\n       ".join(["spec_name", "config_id", "quick", *claim_cols])

    keep = [q(name) for name, _ in axes] + ["n", "failed"]
    for m in metrics:
        keep += [q(m + "_mean"), q(m + "_se")]
    keep_sql = ", ".join(f"f.{col}" for col in keep)

    return f"""
WITH agg AS (
  SELECT {grouped}
  FROM runs WHERE {where}
  GROUP BY spec_name, config_id, quick
),
front AS (
  SELECT a.*,
         (a.n > 0 AND {finite_a} AND NOT EXISTS (
            SELECT 1 FROM agg b
            WHERE b.spec_name = a.spec_name AND b.quick = a.quick AND b.n > 0
              AND {finite_b} AND {as_good} AND ({better})
         )) AS on_front
  FROM agg a
),
claim_list AS (
  SELECT row_number() OVER (ORDER BY spec_name, metric, match::VARCHAR) AS cid,
         spec_name, match, value, se,
         CASE metric {alias_cases} ELSE metric END AS canon
  FROM claims
  WHERE spec_name IN (SELECT DISTINCT spec_name FROM runs WHERE {where})
),
claim_keys AS (
  SELECT cid, match, unnest(json_keys(match)) AS key FROM claim_list
),
claim_terms AS (
  SELECT cid, json_extract(match, {PATH_OF_KEY}) AS want,
         json_type(match, {PATH_OF_KEY}) AS want_type,
         '$."' || replace(replace(key, '"', '\\"'), '.', '"."') || '"' AS path
  FROM claim_keys
),
claim_hits AS (
  SELECT f.spec_name, f.config_id, f.quick, c.canon, c.value, c.se,
         row_number() OVER (
           PARTITION BY f.spec_name, f.config_id, f.quick, c.canon
           ORDER BY (SELECT count(*) FROM claim_terms t WHERE t.cid = c.cid) DESC, c.cid
         ) AS rank
  FROM front f JOIN claim_list c ON c.spec_name = f.spec_name
  WHERE NOT EXISTS (
    SELECT 1 FROM claim_terms t
    WHERE t.cid = c.cid AND NOT coalesce(
      CASE WHEN t.want_type IN {NUMBER_TYPES}
           THEN json_type(f.config, t.path) IN {NUMBER_TYPES}
                AND CAST(json_extract(f.config, t.path) AS DOUBLE) = CAST(t.want AS DOUBLE)
           ELSE CAST(json_extract(f.config, t.path) AS VARCHAR) = CAST(t.want AS VARCHAR)
      END, FALSE)
  )
),
claimed AS (
  SELECT {claim_pivot}
  FROM claim_hits GROUP BY spec_name, config_id, quick
)
SELECT f.spec_name, f.config_id, f.quick, {keep_sql}{claim_select}, f.on_front
FROM front f LEFT JOIN claimed c
  ON c.spec_name = f.spec_name AND c.config_id = f.config_id AND c.quick = f.quick"""
